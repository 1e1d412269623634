"""Group commit (apps.audit.group_commit): concurrent attempts share a statement and a commit,
and each thread still gets its own row's id, committed, before it goes on."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import DatabaseError, connections

from apps.audit.group_commit import GroupCommit
from apps.audit.models import AuditEvent
from apps.audit.recording import Attempt, GatewayAttempt

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 24


def begin_in_a_thread(request_id: str, gate: threading.Barrier) -> int:
    try:
        gate.wait()
        return GatewayAttempt(Attempt(request_id=request_id, method="GET", path="/x", decision="allow")).begin()
    finally:
        connections.close_all()


def test_concurrent_attempts_each_get_their_own_committed_row_in_fewer_statements():
    gate = threading.Barrier(THREADS)
    with ThreadPoolExecutor(THREADS) as pool:
        ids = list(pool.map(lambda i: begin_in_a_thread(f"r-group-{i}", gate), range(THREADS)))
    assert len(set(ids)) == THREADS
    rows = dict(AuditEvent.objects.filter(pk__in=ids).values_list("pk", "request_id"))
    assert rows == {event_id: f"r-group-{i}" for i, event_id in enumerate(ids)}  # each thread its own row


def test_a_batch_shares_one_insert_statement_and_a_failure_fails_every_row_of_it(monkeypatch):
    group = GroupCommit("INSERT INTO audit_auditevent (request_id) VALUES ")
    written: list[int] = []
    release = threading.Event()

    def slow_write(batch):  # the first leader holds the write until every other thread queued
        written.append(len(batch))
        if len(written) == 1:
            release.wait(5)
            batch[0].id = 1
            return
        for row in batch:  # the second batch's statement fails
            row.error = DatabaseError("server has gone away")

    monkeypatch.setattr(group, "_write", slow_write)
    results: list[object] = [None] * 6

    def insert(i: int) -> None:
        try:
            results[i] = group.insert("(%s)", [f"r-{i}"])
        except DatabaseError as exc:
            results[i] = exc

    first = threading.Thread(target=insert, args=(0,))
    first.start()
    while not written:
        pass
    others = [threading.Thread(target=insert, args=(i,)) for i in range(1, 6)]
    for thread in others:
        thread.start()
    while len(group._queue) < 5:
        pass
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert written == [1, 5]  # the five who waited went together, in one statement
    assert results[0] == 1
    assert all(isinstance(result, DatabaseError) for result in results[1:])  # fail-closed, all of them
