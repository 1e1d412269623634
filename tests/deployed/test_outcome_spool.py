"""A crash with outcomes in the spool: nothing lost, nothing doubled (apps.audit.spool).

The gateway makes an outcome durable by appending it to its process's spool file before the
request's thread is released; a drainer thread commits it into MariaDB.  Here MariaDB is
stopped while requests are on their way, so their outcomes can only wait in the spool; then
every gateway daemon is killed with SIGKILL (what a crash of the process, or of Apache with
it, does to the gateway), MariaDB starts again, and the trail must hold every outcome exactly
as the clients received it: none interrupted, none twice, no segment left behind.

This stops the host's MariaDB, so it only runs with AUDITGATE_TEST_DB_RESTART=1, which
`make test` sets (see test_database_restart.py); without it the test is reported as skipped.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from auditgate.env import read_env_file
from tests.deployed.conftest import daemons, manage, needs_db_restart
from tests.deployed.load import call
from tests.deployed.test_database_restart import mariadb
from tests.deployed.trail import gateway_events

pytestmark = [pytest.mark.deployed, needs_db_restart]

REQUESTS = 12
UPSTREAM_SECONDS = 3


def spool_dir() -> Path:
    return Path(read_env_file(Path("/etc/auditgate/auditgate.env"))["AUDITGATE_AUDIT_SPOOL_DIR"])


def segments() -> list[Path]:
    return sorted(spool_dir().glob("*.outcomes"))


def test_outcomes_spooled_while_the_database_is_down_survive_a_kill_of_every_gateway_daemon(
    admin, admin_token, register_upstream
):
    name = register_upstream("/")
    time.sleep(1.1)  # the gateway's caches see the new upstream
    path = f"/gw/{name}/slow?seconds={UPSTREAM_SECONDS}"
    with ThreadPoolExecutor(REQUESTS) as pool:
        futures = [pool.submit(call, admin_token, path, 60) for _ in range(REQUESTS)]
        time.sleep(1.5)  # every attempt committed; every request waits on the upstream
        mariadb("stop")
        try:
            answers = [future.result() for future in futures]
            assert [a.status for a in answers] == [200] * REQUESTS, answers
            waiting = segments()
            assert waiting, "the outcomes wait in the spool while the database is down"
            killed = [pid for pid, _ in daemons("auditgate-gw")]
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
        finally:
            mariadb("start")
    time.sleep(1)
    closed = manage("audit_reconcile")
    assert closed.returncode == 0, closed.stderr
    events = gateway_events(admin, name)
    recorded = {e["request_id"]: (e["status"], e["error"], bool(e["completed_at"])) for e in events}
    assert len(events) == REQUESTS, "one event per request, none twice"
    assert recorded == {a.request_id: (200, "", True) for a in answers}
    assert segments() == [], "no segment left behind"
    assert not {pid for pid, _ in daemons("auditgate-gw")} & set(killed)
