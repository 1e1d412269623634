"""Completeness: attempts are committed before forwarding, outcomes after, fail-closed."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from apps.audit import sealing
from apps.audit.models import AuditEvent
from apps.audit.reconciling import process_start, reconcile
from apps.gateway import forwarding
from apps.gateway.models import AccessRule, Upstream
from tests.gateway.test_proxy_view import body_of, only_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(make_user):
    return make_user("alice", groups=("ops", "dev"))


@pytest.fixture
def upstream(upstream_server, alice):
    target = Upstream.objects.create(name="up", base_url=upstream_server.url, internal=True)
    AccessRule.objects.create(upstream=target, user=alice, methods=[])
    return target


def test_the_attempt_is_committed_before_the_upstream_is_contacted(client_for, alice, upstream, monkeypatch):
    real_open = forwarding.open_upstream
    seen_at_forward = []

    def spy(*args, **kwargs):
        seen_at_forward.extend(AuditEvent.objects.filter(event_type="gateway.request").values("completed_at", "status"))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(forwarding, "open_upstream", spy)
    body_of(client_for(alice).get("/gw/up/x"))
    assert seen_at_forward == [{"completed_at": None, "status": None}]
    event = only_event()
    assert (event.status, event.completed_at is not None) == (200, True)


def test_the_event_describes_the_request_and_both_bodies(client_for, alice, upstream):
    payload = os.urandom(200_000)
    response = client_for(alice).post("/gw/up/upload", data=payload, content_type="application/octet-stream",
                                      HTTP_X_FORWARDED_FOR="203.0.113.9")  # fmt: skip
    body = body_of(response)
    event = only_event()
    assert event.request_sha256 == hashlib.sha256(payload).hexdigest()
    assert event.response_sha256 == hashlib.sha256(body).hexdigest()
    assert (event.request_bytes, event.response_bytes) == (len(payload), len(body))
    assert (event.actor_groups, event.auth_method, event.host) == (["dev", "ops"], "token", "testserver")
    assert (event.peer_ip, event.source_ip, event.forwarded_chain) == ("127.0.0.1", "127.0.0.1", "203.0.113.9")
    assert event.ttfb_ms > 0 and event.overhead_ms > 0 and event.duration_ms >= event.ttfb_ms
    assert event.worker == f"{socket.gethostname()}/{os.getpid()}@{process_start(os.getpid())}"
    assert not event.client_aborted


def test_without_an_audit_record_nothing_is_forwarded(client_for, alice, upstream, upstream_server, monkeypatch):
    token_client = client_for(alice)

    def broken(**fields):
        raise DatabaseError("audit table unavailable")

    monkeypatch.setattr(AuditEvent.objects, "insert", broken)
    seen_before = len(upstream_server.server.seen)
    response = token_client.get("/gw/up/x")
    assert (response.status_code, response.json()["code"]) == (503, "audit_unavailable")
    assert len(upstream_server.server.seen) == seen_before


def test_a_fail_open_upstream_is_forwarded_and_recorded_afterwards(client_for, alice, upstream, monkeypatch, caplog):
    Upstream.objects.filter(pk=upstream.pk).update(fail_open=True)
    token_client = client_for(alice)
    real_insert = AuditEvent.objects.insert
    calls = []

    def fails_once(**fields):
        calls.append(fields)
        if len(calls) == 1:
            raise DatabaseError("audit table unavailable")
        return real_insert(**fields)

    monkeypatch.setattr(AuditEvent.objects, "insert", fails_once)
    response = token_client.get("/gw/up/x")
    body_of(response)
    assert response.status_code == 200
    assert "AUDIT TRAIL UNAVAILABLE" in caplog.text
    event = only_event()  # written whole when the response ended
    assert (event.status, event.decision) == (200, "allow")


def test_the_outcome_is_written_once(make_event):
    event = make_event(completed_at=None, status=None)
    assert AuditEvent.objects.record_outcome(event.pk, completed_at=timezone.now(), status=200)
    assert not AuditEvent.objects.record_outcome(event.pk, completed_at=timezone.now(), status=500)
    assert AuditEvent.objects.get(pk=event.pk).status == 200
    with pytest.raises(TypeError):
        AuditEvent.objects.record_outcome(event.pk, path="/elsewhere")


def test_attempts_of_a_dead_process_are_reconciled_as_interrupted(make_event):
    dead = make_event(completed_at=None, status=None, worker=f"{socket.gethostname()}/999999999")
    alive = make_event(completed_at=None, status=None, worker=f"{socket.gethostname()}/{os.getpid()}")
    old = make_event(completed_at=None, status=None, worker="other-host/1",
                     occurred_at=timezone.now() - timedelta(hours=25))  # fmt: skip
    make_event(completed_at=None, status=None, worker="other-host/2", occurred_at=timezone.now() - timedelta(minutes=2))
    assert reconcile() == [dead.pk, old.pk]
    assert AuditEvent.objects.get(pk=dead.pk).error == "interrupted"
    assert AuditEvent.objects.get(pk=alive.pk).completed_at is None
    assert reconcile() == []  # never twice


def test_an_attempt_of_a_live_process_is_closed_past_the_bound_no_exchange_can_outlive(make_event, settings):
    """No exchange outlives AUDIT_OPEN_ATTEMPT_BOUND_SECONDS (the upstreams' total_timeout caps it):
    an attempt still open after it holds the trail's sealing back for nothing."""
    from apps.audit.recording import WORKER
    from apps.gateway.models.upstreams import MAX_TOTAL_TIMEOUT

    assert settings.AUDIT_OPEN_ATTEMPT_BOUND_SECONDS > MAX_TOTAL_TIMEOUT + 45 + 5  # + socket-timeout + connect
    bound = timedelta(seconds=settings.AUDIT_OPEN_ATTEMPT_BOUND_SECONDS)
    streaming = make_event(completed_at=None, status=None, worker=WORKER,
                           occurred_at=timezone.now() - bound + timedelta(seconds=30))  # fmt: skip
    stuck = make_event(completed_at=None, status=None, worker=WORKER,
                       occurred_at=timezone.now() - bound - timedelta(seconds=30))  # fmt: skip
    assert reconcile() == [stuck.pk]
    assert AuditEvent.objects.get(pk=streaming.pk).completed_at is None


def test_a_stream_of_a_live_process_is_not_reconciled_within_the_bound_but_a_reused_pid_is(make_event):
    from apps.audit.recording import WORKER

    started = WORKER.rpartition("@")[2]
    assert started == process_start(os.getpid())
    streaming = make_event(completed_at=None, status=None, worker=WORKER,
                           occurred_at=timezone.now() - timedelta(minutes=2))  # fmt: skip
    reused = make_event(completed_at=None, status=None, worker=f"{socket.gethostname()}/{os.getpid()}@{started}1")
    assert reconcile() == [reused.pk]
    assert AuditEvent.objects.get(pk=streaming.pk).completed_at is None


def test_an_open_attempt_holds_the_seal_back_until_it_completes(make_event, settings, tmp_path):
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "c.jsonl")
    long_ago = timezone.now() - timedelta(hours=1)
    first = make_event(recorded_at=long_ago)
    pending = make_event(recorded_at=long_ago, completed_at=None, worker="other-host/1", occurred_at=long_ago)
    make_event(recorded_at=long_ago)
    assert sealing.seal().last_seq == first.pk
    assert sealing.seal() is None
    reconcile(now=timezone.now(), older_than=timedelta(minutes=15))
    assert sealing.seal(now=timezone.now() + timedelta(minutes=5)).first_seq == pending.pk
    assert sealing.verify().ok


def test_the_reconcile_command_reports(make_event, capsys):
    from django.core.management import call_command

    make_event(completed_at=None, worker=f"{socket.gethostname()}/999999999")
    call_command("audit_reconcile")
    assert capsys.readouterr().out.startswith("interrupted: 1")
    assert json.dumps(list(AuditEvent.objects.values_list("error", flat=True))) == '["interrupted"]'


def test_without_the_database_the_gateway_answers_503_not_500(client_for, alice, upstream, upstream_server,
                                                              monkeypatch):  # fmt: skip
    from apps.gateway import steps

    token_client = client_for(alice)

    def down(*args, **kwargs):
        raise DatabaseError("server has gone away")

    monkeypatch.setattr(steps, "resolve", down)
    seen_before = len(upstream_server.server.seen)
    response = token_client.get("/gw/up/x")
    assert (response.status_code, response.json()["code"]) == (503, "database_unavailable")
    assert len(upstream_server.server.seen) == seen_before


def test_an_outcome_the_database_refused_waits_in_the_spool_until_the_next_drain(monkeypatch):
    from apps.audit.recording import Attempt, GatewayAttempt, Outcome, outcome_spool

    attempt = GatewayAttempt(Attempt(request_id="r-during-outage", method="GET", path="/x", decision="allow"))
    attempt.begin()
    real = AuditEvent.objects.record_outcome

    def database_gone(*args, **kwargs):
        raise DatabaseError("server has gone away")

    monkeypatch.setattr(AuditEvent.objects, "record_outcome", database_gone)
    attempt.finish(Outcome(status=200))  # does not raise: the response has already gone out
    assert AuditEvent.objects.get(pk=attempt.event_id).completed_at is None
    assert outcome_spool().pending() == 1  # on disk, not lost
    monkeypatch.setattr(AuditEvent.objects, "record_outcome", real)
    later = GatewayAttempt(Attempt(request_id="r-after", method="GET", path="/y", decision="allow"))
    later.begin()
    later.finish(Outcome(status=201))  # the database is back: this drain takes both
    events = {e.request_id: (e.status, e.completed_at is not None) for e in AuditEvent.objects.all()}
    assert events == {"r-during-outage": (200, True), "r-after": (201, True)}
    assert outcome_spool().pending() == 0
