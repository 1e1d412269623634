"""Checking the audit trail after a fault under load.

Complete means: every attempt has exactly one outcome (or was closed as interrupted by
``audit_reconcile`` because its process died), no request id twice, every answered request
recorded with its status, and every failed one either recorded or listed by
``audit_access_log`` as never seen by Django.  When a fault kills daemon processes, an answered
request may instead be closed as interrupted: its process died after the last byte went out
and before its outcome was written (the trail then says the outcome is unknown, never a wrong
one); those are counted, and bounded by the threads of the killed processes.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from tests.deployed.conftest import BASE_URL, manage
from tests.deployed.load import Outcome, call, closed_loop, describe, record


class Load:
    """A closed loop of ``concurrency`` clients in the background while a fault happens."""

    def __init__(self, token: str, path: str, concurrency: int, seconds: float):
        self.since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        self.outcomes: list[Outcome] = []
        work = lambda: call(token, path, timeout=60)  # noqa: E731
        self._thread = threading.Thread(target=lambda: self.outcomes.extend(closed_loop(concurrency, seconds, work)))
        self._thread.start()

    def wait(self) -> list[Outcome]:
        self._thread.join()
        return self.outcomes


def gateway_events(admin, upstream: str) -> list[dict]:
    """The gateway events of ``upstream``, oldest first (the export has every field)."""
    response = admin.get(f"{BASE_URL}/api/audit/events/export/", params={"format": "ndjson", "upstream": upstream},
                         timeout=120)  # fmt: skip
    assert response.status_code == 200
    events = [json.loads(line) for line in response.iter_lines() if line]
    return [e for e in events if e["event_type"].startswith("gateway.")]


def check_trail(admin, upstream: str, load: Load, label: str, *, kills: bool = False) -> dict[str, int]:
    """The audit trail of ``upstream`` is complete; returns the counts for the record.
    ``kills``: the fault killed daemon processes (see the module's docstring)."""
    closed = manage("audit_reconcile")
    assert closed.returncode == 0, closed.stderr
    deadline = time.monotonic() + 15
    while True:  # outcomes of the last responses are written as they close
        events = gateway_events(admin, upstream)
        if all(e["completed_at"] for e in events) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    ids = Counter(e["request_id"] for e in events)
    assert not [rid for rid, n in ids.items() if n > 1], "a request id recorded twice"
    interrupted = [e for e in events if e["error"] == "interrupted"]
    with_outcome = [e for e in events if e["completed_at"] and e["error"] != "interrupted"]
    assert len(events) == len(with_outcome) + len(interrupted), "an attempt without an outcome"
    by_id = {e["request_id"]: e for e in events}
    answered = [o for o in load.outcomes if o.status == 200]
    recorded_as = [by_id.get(o.request_id, {}) for o in answered]
    answered_interrupted = sum(1 for e in recorded_as if e.get("error") == "interrupted")
    assert all(e.get("status") == 200 or (kills and e.get("error") == "interrupted") for e in recorded_as), (
        "an answered request not recorded"
    )
    failed = [o for o in load.outcomes if o.status != 200]
    unseen = _never_seen(upstream, load.since)
    unaccounted = [o for o in failed if o.request_id and o.request_id not in by_id and o.request_id not in unseen]
    assert not unaccounted, f"failed requests neither audited nor in the access log: {unaccounted[:5]}"
    counts = {"requests": len(load.outcomes), "failed": len(failed), "audited": len(events),
              "interrupted": len(interrupted), "answered_but_interrupted": answered_interrupted,
              "never_seen_by_django": len(unseen)}  # fmt: skip
    record("faults.txt", f"{label}: {counts}; {describe(load.outcomes)}")
    return counts


def _never_seen(upstream: str, since: datetime) -> set[str]:
    result = manage("audit_access_log", "--prefix", f"/gw/{upstream}/", "--since", since.isoformat(), "--json")
    assert result.returncode == 0, result.stderr
    return {r["request_id"] for r in json.loads(result.stdout)["requests"]}
