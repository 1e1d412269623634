"""Delivery to a real local HTTPS receiver: signed, one alert per POST, at least once, with a
capped backoff; and the command that runs it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.utils import timezone

from apps.alerts import delivery
from apps.alerts.models import Alert, AlertRule
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.django_db

SECRET = "receiver-shared-secret-0123456789"


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "alerts-webhook.secret"
    path.write_text(SECRET + "\n")
    return str(path)


@pytest.fixture
def receiver():
    with WebhookReceiver(SECRET.encode()) as running:
        yield running


def hook_to(receiver, secret_file):
    return delivery.webhook(receiver.url, str(receiver.ca_file), secret_file)


def alert(subject="token k3J9x2Qa", **fields):
    rule = AlertRule.objects.get(name="denials per token")
    return Alert.objects.create(rule=rule, rule_name=rule.name, kind=rule.kind, subject=subject, event_ids=[1, 2],
                                detail={"denials": 10}, dedup_key=f"test:{subject}", **fields)  # fmt: skip


def test_an_alert_is_posted_signed_with_an_idempotency_key(receiver, secret_file):
    sent = alert()
    assert delivery.deliver_due(hook_to(receiver, secret_file), timezone.now()) == (1, 0)
    [received] = receiver.received
    assert received.signature_ok
    assert received.headers["Idempotency-Key"] == f"auditgate-alert-{sent.pk}"
    assert received.headers["Content-Type"] == "application/json"
    body = received.json()
    assert (body["id"], body["kind"], body["subject"], body["event_ids"]) == (sent.pk, "denials", sent.subject, [1, 2])
    sent.refresh_from_db()
    assert sent.delivered_at is not None and sent.attempts == 1 and sent.last_error == ""


def test_each_alert_is_its_own_request(receiver, secret_file):
    alert("a"), alert("b")
    assert delivery.deliver_due(hook_to(receiver, secret_file), timezone.now()) == (2, 0)
    assert [r.json()["subject"] for r in receiver.received] == ["a", "b"]


def test_a_failed_delivery_is_retried_after_its_backoff_until_acknowledged(receiver, secret_file):
    receiver.statuses = [503, 500, 200]
    sent = alert()
    hook, now = hook_to(receiver, secret_file), timezone.now()
    assert delivery.deliver_due(hook, now) == (0, 1)
    sent.refresh_from_db()
    assert (sent.attempts, sent.last_error, sent.delivered_at) == (1, "HTTP 503", None)
    assert sent.next_attempt_at == now + timedelta(seconds=5)
    assert delivery.deliver_due(hook, now + timedelta(seconds=4)) == (0, 0)  # not due yet
    assert delivery.deliver_due(hook, now + timedelta(seconds=5)) == (0, 1)
    sent.refresh_from_db()
    assert sent.next_attempt_at == now + timedelta(seconds=5 + 10)
    assert delivery.deliver_due(hook, now + timedelta(seconds=15)) == (1, 0)
    sent.refresh_from_db()
    assert sent.attempts == 3 and sent.delivered_at is not None and len(receiver.received) == 3


def test_the_backoff_doubles_up_to_ten_minutes():
    assert [delivery.backoff(n).total_seconds() for n in (1, 2, 3, 8, 9, 50)] == [5, 10, 20, 600, 600, 600]


def test_a_round_stops_at_the_first_failure(receiver, secret_file):
    receiver.statuses = [500]
    alert("a"), alert("b")
    assert delivery.deliver_due(hook_to(receiver, secret_file), timezone.now()) == (0, 1)
    assert len(receiver.received) == 1


def test_an_unreachable_or_untrusted_receiver_is_a_failed_attempt(receiver, secret_file, tmp_path):
    sent = alert()
    closed = delivery.webhook("https://127.0.0.1:9/alerts", str(receiver.ca_file), secret_file)
    assert delivery.deliver_due(closed, timezone.now()) == (0, 1)
    untrusted = delivery.webhook(receiver.url, "", secret_file)  # the system CAs do not know it
    assert delivery.deliver_due(untrusted, timezone.now() + timedelta(minutes=1)) == (0, 1)
    sent.refresh_from_db()
    assert sent.attempts == 2 and sent.delivered_at is None and receiver.received == []


def test_the_webhook_must_be_https_and_signed(secret_file, tmp_path, settings):
    settings.ALERTS_WEBHOOK_URL = ""
    assert delivery.webhook() is None  # not configured: alerts are only listed
    with pytest.raises(ImproperlyConfigured, match="https"):
        delivery.webhook("http://127.0.0.1:8080/alerts", "", secret_file)
    settings.ALERTS_WEBHOOK_SECRET_FILE = ""
    with pytest.raises(ImproperlyConfigured, match="SECRET_FILE"):
        delivery.webhook("https://127.0.0.1:8443/alerts")
    short = tmp_path / "short"
    short.write_text("too short")
    with pytest.raises(ImproperlyConfigured, match="16"):
        delivery.webhook("https://127.0.0.1:8443/alerts", "", str(short))


def test_the_command_evaluates_and_delivers_in_one_pass(receiver, secret_file, make_event, capsys):
    call_command("audit_alerts", "--once")  # the first run: the cursor starts at the newest event
    for _ in range(10):
        make_event(event_type="gateway.denied", decision="deny", status=403, token_key_id="k3J9x2Qa")
    call_command("audit_alerts", "--once", "--webhook-url", receiver.url, "--webhook-ca-file",
                 str(receiver.ca_file), "--webhook-secret-file", secret_file)  # fmt: skip
    assert "2 alerts fired, 2 delivered" in capsys.readouterr().out
    assert sorted(a["subject"] for a in receiver.documents()) == ["actor alice", "token k3J9x2Qa"]
    assert not Alert.objects.filter(delivered_at__isnull=True).exists()


def test_the_loop_runs_for_its_seconds(make_event, capsys):
    call_command("audit_alerts", "--seconds", "0.3", "--interval", "0.1")
    assert "another evaluator" not in capsys.readouterr().out


def test_one_evaluator_at_a_time_per_database(evaluate):
    from dataclasses import replace

    from django.db import connections

    from apps.alerts import evaluator

    rival = connections.create_connection("default")  # another host's evaluator
    try:
        assert replace(evaluator.EVALUATOR_LOCK, connection=rival).take(wait=0)
        assert evaluator.run_pass(None) is None, "it stands aside while the other one runs"
    finally:
        rival.close()  # the lock dies with its session
    evaluate()  # runs a pass now (it asserts that the pass was not refused)
