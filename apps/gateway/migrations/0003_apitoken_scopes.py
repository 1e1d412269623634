"""Token scopes replace the ``management_api`` flag (issue 12, item 13).

A token that had ``management_api`` gets every management scope, so that nothing
that worked before the upgrade stops working (its upstream limit now also limits
what it sees on the management API); a token without it gets none, as before.

The ``management_api`` column leaves the model but stays in the table for one
release, with a database default of false, and ``scopes`` gets a database default
of ``[]``: during a deploy the previous release's processes keep serving until they
restart, and read and write the token table as they know it.  They see new tokens
as not allowed on the management API (fail closed) and the migrated ones as before.
A later migration drops the column.
"""

from django.db import migrations, models

import apps.gateway.scopes

# Every scope that exists in this migration (not apps.gateway.scopes.SCOPES, which may grow).
ALL_SCOPES = ["audit:read", "policy:read", "policy:write", "tokens:read", "tokens:write"]


def management_api_to_scopes(apps, schema_editor):
    APIToken = apps.get_model("gateway", "APIToken")
    APIToken.objects.filter(management_api=True).update(scopes=ALL_SCOPES)


def scopes_to_management_api(apps, schema_editor):
    APIToken = apps.get_model("gateway", "APIToken")
    APIToken.objects.update(management_api=False)
    APIToken.objects.exclude(scopes=[]).update(management_api=True)


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0002_upstream_deadline_rewrite_headers_rule_case"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="scopes",
            field=models.JSONField(
                blank=True,
                default=list,
                db_default=[],
                help_text='What it may do on the management API (/api/), e.g. ["audit:read"]; empty: the gateway only.',
                validators=[apps.gateway.scopes.validate_scopes],
            ),
        ),
        migrations.RunPython(management_api_to_scopes, scopes_to_management_api, elidable=True),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterField(
                    model_name="apitoken",
                    name="management_api",
                    field=models.BooleanField(default=False, db_default=False),
                ),
            ],
            state_operations=[
                migrations.RemoveField(model_name="apitoken", name="management_api"),
            ],
        ),
    ]
