"""Faults of the server itself under load: a daemon killed, Apache reloaded, a code deploy
(the database restart is in test_database_restart.py).  Each counts the requests that
failed and checks that the audit trail is complete (tests/deployed/trail.py).

Figures go to test-artifacts/faults.txt.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.deployed.conftest import apache_defines, daemons
from tests.deployed.load import Outcome, call, group_capacity, record
from tests.deployed.trail import Load, check_trail

pytestmark = pytest.mark.deployed

HOME = Path("/srv/auditgate")
RESTART = "/usr/local/sbin/auditgate-restart-daemons"
LONG_SECONDS = 12


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
    counts = check_trail(admin, upstream_of(slowish), load, "kill -9 of one gateway daemon", kills=True)
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
    # A reload kills the daemons still running 3 s in.
    counts = check_trail(admin, upstream_of(slowish), load, "apache2ctl graceful every 3 s (4 reloads)", kills=True)
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


def test_a_code_deploy_under_load_drains_in_flight_requests_and_loses_no_audit_event(admin, admin_token, slowish,
                                                                                     second_release):  # fmt: skip
    long_request: list[Outcome] = []
    long_path = slowish.replace("seconds=0.3", f"seconds={LONG_SECONDS}")

    def deploy() -> None:
        _point_current_at(second_release)
        started = threading.Thread(target=lambda: long_request.append(call(admin_token, long_path, timeout=60)))
        started.start()
        time.sleep(0.5)
        # What the role's "restart wsgi daemons" handler runs.
        subprocess.run([RESTART, "auditgate-gw", "auditgate-api"], check=True, capture_output=True, timeout=300)
        started.join()

    gw_before = {pid for pid, _ in daemons("auditgate-gw")}
    load = during_load(admin_token, slowish, 20, deploy)
    check_trail(admin, upstream_of(slowish), load, f"code deploy (new release + {RESTART})")
    assert (HOME / "current").resolve() == second_release
    assert not gw_before & {pid for pid, _ in daemons("auditgate-gw")}, "every gateway daemon was restarted"
    (outcome,) = long_request
    assert outcome.status == 200, f"a {LONG_SECONDS} s request in flight during the deploy was cut: {outcome}"
    record("faults.txt", f"  a {LONG_SECONDS} s request in flight during the deploy: {outcome.status}")


def test_an_apache_reload_cuts_requests_in_flight_for_longer_than_3_s_and_records_them(admin, admin_token,
                                                                                        register_upstream):  # fmt: skip
    """The documented limit of a reload (a deploy that changes Apache's configuration does one; log
    rotation does not, test_log_rotation.py): the parent kills the old daemons 3 s in."""
    name = register_upstream("/", read_timeout=38)
    time.sleep(1.1)
    load = Load(admin_token, f"/gw/{name}/slow?seconds={LONG_SECONDS}", 2, 1)
    time.sleep(1)
    graceful()
    outcomes = load.wait()
    assert [o.status for o in outcomes] == [502, 502]
    counts = check_trail(admin, name, load, f"apache2ctl graceful with {LONG_SECONDS} s requests in flight")
    assert counts["interrupted"] == 2
