"""The outcome spool (apps.audit.spool): durable before the request's thread is released,
drained into MariaDB, nothing lost or doubled, across a real crash of the process that spooled."""

from __future__ import annotations

import os
import signal
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.reconciling import reconcile
from apps.audit.recording import Attempt, GatewayAttempt, Outcome
from apps.audit.spool import SUFFIX, Spool, apply_segments, decode, encode, wait_drained


def open_attempt(request_id: str, **fields) -> GatewayAttempt:
    attempt = GatewayAttempt(Attempt(request_id=request_id, method="GET", path="/x", decision="allow", **fields))
    attempt.begin()
    return attempt


def outcome(status: int = 200) -> dict:
    return Outcome(status=status, upstream_status=status).fields(1.5)


def spool_in_a_process_that_dies(directory: Path, records: list[tuple[int, dict]]) -> None:
    """A child process spools these outcomes and is killed with SIGKILL before any drain."""
    pid = os.fork()
    if pid == 0:  # the child: no database, no drainer, only the spool's write()s
        try:
            spool = Spool(directory, f"{os.getpid()}.child")
            spool._start = lambda: None  # type: ignore[method-assign]  # never drains
            for event_id, fields in records:
                spool.append(event_id, fields)
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_a_line_round_trips_and_a_torn_last_line_is_ignored():
    fields = outcome(201)
    data = encode(7, fields) + encode(8, outcome(404))[:-9]  # the second write never finished
    assert list(decode(data)) == [(7, fields)]


def test_outcomes_spooled_by_a_killed_process_are_drained_once_and_only_once(tmp_path, db):
    attempts = [open_attempt(f"r-killed-{i}") for i in range(3)]
    spool_in_a_process_that_dies(tmp_path, [(a.event_id, outcome(200 + i)) for i, a in enumerate(attempts)])
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 1  # on disk after the crash
    assert AuditEvent.objects.filter(completed_at__isnull=False).count() == 0

    assert apply_segments(tmp_path, live_too=False) == 3
    statuses = dict(AuditEvent.objects.values_list("request_id", "status"))
    assert statuses == {"r-killed-0": 200, "r-killed-1": 201, "r-killed-2": 202}
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []
    # A segment drained twice (a crash between the commit and the delete) changes nothing.
    spool_in_a_process_that_dies(tmp_path, [(attempts[0].event_id, outcome(500))])
    assert apply_segments(tmp_path, live_too=False) == 0
    assert AuditEvent.objects.get(request_id="r-killed-0").status == 200


def test_a_live_processs_segment_is_applied_but_left_to_its_own_drainer(tmp_path, db):
    attempt = open_attempt("r-live")
    spool = Spool(tmp_path, "live")
    spool._start = lambda: None  # type: ignore[method-assign]
    spool.append(attempt.event_id, outcome())
    assert apply_segments(tmp_path, live_too=False) == 0  # its lock is held: not an orphan
    assert AuditEvent.objects.get(pk=attempt.event_id).completed_at is None
    assert apply_segments(tmp_path, live_too=True) == 1
    assert AuditEvent.objects.get(pk=attempt.event_id).status == 200
    assert len(list(tmp_path.glob(f"*{SUFFIX}"))) == 1
    assert spool.drain() == 0  # already written: nothing doubled
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []


def test_reconcile_applies_the_spooled_outcome_of_a_dead_process_instead_of_calling_it_interrupted(
    tmp_path, db, settings
):
    settings.AUDIT_SPOOL_DIR = str(tmp_path)
    dead = f"{socket.gethostname()}/999999999"
    answered = open_attempt("r-answered", occurred_at=timezone.now() - timedelta(seconds=2))
    cut = open_attempt("r-cut", occurred_at=timezone.now() - timedelta(seconds=2))
    with connection.cursor() as cursor:  # the attempts were taken by a process that is gone
        cursor.execute("UPDATE audit_auditevent SET worker = %s WHERE id IN (%s, %s)",
                       [dead, answered.event_id, cut.event_id])  # fmt: skip
    spool_in_a_process_that_dies(tmp_path, [(answered.event_id, outcome(200))])
    assert reconcile() == [cut.event_id]
    events = {e.request_id: (e.status, e.error) for e in AuditEvent.objects.all()}
    assert events == {"r-answered": (200, ""), "r-cut": (None, "interrupted")}
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []


@pytest.mark.django_db(transaction=True)
def test_the_drainer_thread_commits_what_was_spooled_in_batches(tmp_path):
    spool = Spool(tmp_path, "threaded", linger=0.05)
    attempts = [open_attempt(f"r-thread-{i}") for i in range(20)]
    for attempt in attempts:
        spool.append(attempt.event_id, outcome())
    assert wait_drained(spool, timeout=10)
    assert AuditEvent.objects.filter(completed_at__isnull=False, status=200).count() == 20
    assert spool.drained == 20
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []


@pytest.mark.django_db(transaction=True)
def test_the_drainer_waits_out_a_database_outage_and_loses_nothing(tmp_path, monkeypatch):
    spool = Spool(tmp_path, "outage")
    attempt = open_attempt("r-outage")
    real = AuditEvent.objects.record_outcome
    calls = []

    def down(*args, **kwargs):
        calls.append(1)
        raise DatabaseError("server has gone away")

    monkeypatch.setattr(AuditEvent.objects, "record_outcome", down)
    spool.append(attempt.event_id, outcome())
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:  # it retried: still there
        time.sleep(0.01)
    assert len(calls) >= 2 and spool.pending() == 1
    monkeypatch.setattr(AuditEvent.objects, "record_outcome", real)
    assert wait_drained(spool, timeout=10)
    assert AuditEvent.objects.get(pk=attempt.event_id).status == 200


def test_an_outcome_is_written_directly_when_the_spool_cannot_be_written(db, settings, tmp_path, monkeypatch):
    from apps.audit import recording

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setattr(recording, "_spool", Spool(blocked / "spool", "blocked"))
    attempt = open_attempt("r-no-spool")
    attempt.finish(Outcome(status=204))
    assert AuditEvent.objects.get(pk=attempt.event_id).status == 204
