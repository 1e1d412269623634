"""The default rules: 10 denials in 5 minutes per token and per actor, any use of a sensitive
upstream, a failed verification, sealing stalled over 10 minutes.  Administrators change or
disable them through /api/alerts/rules/ (recorded in the trail)."""

from django.db import migrations

DEFAULT_RULES = (
    {"name": "denials per token", "kind": "denials", "threshold": 10, "window_minutes": 5, "grouping": "token"},
    {"name": "denials per actor", "kind": "denials", "threshold": 10, "window_minutes": 5, "grouping": "actor"},
    {"name": "sensitive upstream used", "kind": "sensitive_upstream", "threshold": 1, "window_minutes": 0},
    {"name": "verification failed", "kind": "verify_failed", "threshold": 1, "window_minutes": 0},
    {"name": "sealing stalled", "kind": "sealing_stalled", "threshold": 1, "window_minutes": 10},
)


def create(apps, schema_editor):
    AlertRule = apps.get_model("alerts", "AlertRule")
    for rule in DEFAULT_RULES:
        AlertRule.objects.get_or_create(name=rule["name"], defaults=rule)


def remove(apps, schema_editor):
    AlertRule = apps.get_model("alerts", "AlertRule")
    AlertRule.objects.filter(name__in=[rule["name"] for rule in DEFAULT_RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]

    operations = [migrations.RunPython(create, remove)]
