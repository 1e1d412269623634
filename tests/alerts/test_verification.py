"""A failed verification (audit_verify) fires the verify_failed rules through the audit
app's signal: the audit app never imports the alerts app."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from apps.alerts.models import Alert, AlertRule
from apps.audit.sealing import Problem, Report
from apps.audit.signals import verification_failed

pytestmark = pytest.mark.django_db


def broken(seq=41, kind="altered"):
    return Report(events_checked=100, problems=[Problem(kind, seq, "hash differs")])


def test_a_failed_verification_fires_an_alert_once_a_day_per_problem():
    verification_failed.send(sender=None, report=broken())
    verification_failed.send(sender=None, report=broken())
    [alert] = Alert.objects.all()
    assert (alert.kind, alert.subject, alert.event_ids) == ("verify_failed", "first bad seq 41", [41])
    assert alert.detail["problems"] == [{"kind": "altered", "seq": 41, "detail": "hash differs"}]
    verification_failed.send(sender=None, report=broken(seq=7))
    assert Alert.objects.count() == 2  # another problem


def test_a_disabled_rule_stays_quiet():
    AlertRule.objects.filter(kind="verify_failed").update(enabled=False)
    verification_failed.send(sender=None, report=broken())
    assert not Alert.objects.exists()


def test_audit_verify_sends_it_when_the_trail_is_not_intact(make_event, seal_settings, tmp_path):
    from apps.audit import sealing

    make_event()
    from datetime import timedelta

    sealing.seal(grace=timedelta(0))
    with pytest.raises(CommandError, match="NOT intact"):
        call_command("audit_verify", "--no-progress", "--checkpoint-file", str(tmp_path / "missing.jsonl"))
    [alert] = Alert.objects.all()
    assert alert.detail["problems"][0]["kind"] == "checkpoint_missing"


def test_an_intact_trail_fires_nothing(make_event, seal_settings):
    call_command("audit_verify", "--no-progress")
    assert not Alert.objects.exists()


def test_a_page_verified_through_the_api_that_finds_an_edit_fires_it(make_event, seal_settings, client_for, make_user):
    from datetime import timedelta

    from django.db import connection

    from apps.audit import sealing

    event = make_event()
    sealing.seal(grace=timedelta(0))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET status = 599 WHERE id = %s", [event.id])
    auditor = client_for(make_user(groups=("auditor",)))
    assert auditor.get("/api/audit/verify").json()["first_bad_seq"] == event.id
    [alert] = Alert.objects.all()
    assert (alert.kind, alert.subject) == ("verify_failed", f"first bad seq {event.id}")
