"""Faults of the server itself under load: a daemon killed, Apache reloaded, a code deploy,
a database restart.  Each counts the requests that failed and checks that the audit trail
is complete: every attempt has exactly one outcome (or was closed as interrupted by
``audit_reconcile`` because its process died), no request id twice, every answered request
recorded, and every failed one either recorded or listed by ``audit_access_log`` as never
seen by Django.

Figures go to test-artifacts/faults.txt.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.deployed.conftest import BASE_URL, apache_defines, daemons, manage
from tests.deployed.load import Outcome, call, closed_loop, describe, group_capacity, record

pytestmark = pytest.mark.deployed

HOME = Path("/srv/auditgate")


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
    response = admin.get(f"{BASE_URL}/api/audit/events/export/", params={"format": "ndjson", "upstream": upstream},
                         timeout=120)  # fmt: skip
    assert response.status_code == 200
    events = [json.loads(line) for line in response.iter_lines() if line]
    return [e for e in events if e["event_type"].startswith("gateway.")]


def check_trail(admin, upstream: str, load: Load, label: str) -> dict[str, int]:
    """The audit trail of ``upstream`` is complete; returns the counts for the record."""
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
    assert all(by_id.get(o.request_id, {}).get("status") == 200 for o in answered), "an answered request not recorded"
    failed = [o for o in load.outcomes if o.status != 200]
    unseen = _never_seen(upstream, load.since)
    unaccounted = [o for o in failed if o.request_id and o.request_id not in by_id and o.request_id not in unseen]
    assert not unaccounted, f"failed requests neither audited nor in the access log: {unaccounted[:5]}"
    counts = {"requests": len(load.outcomes), "failed": len(failed), "audited": len(events),
              "interrupted": len(interrupted), "never_seen_by_django": len(unseen)}  # fmt: skip
    record("faults.txt", f"{label}: {counts}; {describe(load.outcomes)}")
    return counts


def _never_seen(upstream: str, since: datetime) -> set[str]:
    result = manage("audit_access_log", "--prefix", f"/gw/{upstream}/", "--since", since.isoformat(), "--json")
    assert result.returncode == 0, result.stderr
    return {r["request_id"] for r in json.loads(result.stdout)["requests"]}


@pytest.fixture
def slowish(register_upstream) -> Iterator[str]:
    """An upstream on the echo server; requests take 0.3 s so some are always in flight."""
    name = register_upstream("/")
    time.sleep(1.1)
    yield f"/gw/{name}/slow?seconds=0.3"


def upstream_of(path: str) -> str:
    return path.split("/")[2]


def during_load(admin_token: str, path: str, seconds: float, fault: Callable[[], None]) -> Load:
    load = Load(admin_token, path, group_capacity("GW"), seconds)
    time.sleep(2)
    fault()
    load.wait()
    return load


def test_killing_one_gateway_daemon_fails_at_most_its_threads_and_loses_no_audit_event(admin, admin_token, slowish):
    victim = daemons("auditgate-gw")[0][0]
    threads = group_capacity("GW") // len(daemons("auditgate-gw"))
    load = during_load(admin_token, slowish, 8, lambda: os.kill(victim, signal.SIGKILL))
    counts = check_trail(admin, upstream_of(slowish), load, "kill -9 of one gateway daemon")
    assert counts["failed"] <= threads
    assert counts["interrupted"] <= threads
    assert victim not in {pid for pid, _ in daemons("auditgate-gw")}
    assert len(daemons("auditgate-gw")) == int(apache_defines()["AUDITGATE_GW_PROCESSES"]), "Apache started a new one"


def graceful() -> None:
    subprocess.run(["apache2ctl", "graceful"], check=True, capture_output=True, timeout=60)


def test_reloading_apache_every_few_seconds_under_load_loses_no_audit_event(admin, admin_token, slowish):
    def reloads() -> None:
        for _ in range(4):
            graceful()
            time.sleep(3)

    load = during_load(admin_token, slowish, 16, reloads)
    counts = check_trail(admin, upstream_of(slowish), load, "apache2ctl graceful every 3 s (4 reloads)")
    assert counts["requests"] > counts["failed"]


@pytest.fixture
def second_release() -> Iterator[Path]:
    """A copy of the deployed release, as the next deploy would unpack it; put back afterwards."""
    current = (HOME / "current").resolve()
    copy = current.with_name(current.name + "-next")
    shutil.copytree(current, copy, symlinks=True)
    yield copy
    _point_current_at(current)
    graceful()
    shutil.rmtree(copy)


def _point_current_at(release: Path) -> None:
    """What the role does: replace the symlink in one rename."""
    link = HOME / "current.next"
    link.unlink(missing_ok=True)
    link.symlink_to(release)
    link.replace(HOME / "current")


def test_a_code_deploy_under_load_loses_no_audit_event(admin, admin_token, slowish, second_release):
    def deploy() -> None:
        _point_current_at(second_release)
        graceful()  # the role's "reload apache" handler

    load = during_load(admin_token, slowish, 8, deploy)
    check_trail(admin, upstream_of(slowish), load, "code deploy (new release + reload)")
    assert (HOME / "current").resolve() == second_release
