"""Apache's logs rotate daily without a reload (the role's /etc/logrotate.d/apache2).

A reload restarts every mod_wsgi daemon and cuts requests in flight for longer than 3 s
(test_process_faults.py), so Debian's rotation, which reloads, would do that once a day.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.deployed.conftest import ACCESS_LOG, daemons, logged_by_apache, manage_ok
from tests.deployed.load import call
from tests.deployed.trail import Load

pytestmark = pytest.mark.deployed

APACHE_ROTATION = "/etc/logrotate.d/apache2"
SLOW_SECONDS = 6  # past the 3 s after which a reload kills the old daemons


def rotate_apache_logs() -> None:
    """What the daily logrotate run does, now."""
    subprocess.run(["logrotate", "--force", APACHE_ROTATION], check=True, capture_output=True, timeout=120)


def test_the_hosts_logrotate_configuration_is_valid():
    result = subprocess.run(["logrotate", "--debug", "/etc/logrotate.conf"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "error:" not in result.stderr, result.stderr[-2000:]
    assert "rotating pattern: /var/log/apache2/*.log" in result.stderr


def test_rotating_apaches_logs_cuts_no_request_and_audit_access_log_reads_across_it(admin_token, register_upstream):
    name = register_upstream("/", read_timeout=38)
    time.sleep(1.1)  # the upstream cache
    since = (datetime.now(UTC) - timedelta(seconds=1)).replace(microsecond=0).isoformat()
    # TRACE is answered by Apache itself (TraceEnable Off): logged, never seen by Django.
    trace = call(admin_token, f"/gw/{name}/before-the-rotation", method="TRACE")
    assert trace.status == 405 and logged_by_apache(trace.request_id)

    gateway_daemons = {pid for pid, _ in daemons("auditgate-gw")}
    slow = Load(admin_token, f"/gw/{name}/slow?seconds={SLOW_SECONDS}", 2, 1)
    time.sleep(1)
    rotate_apache_logs()
    assert [o.status for o in slow.wait()] == [200, 200], "a rotation cut requests in flight"
    assert {pid for pid, _ in daemons("auditgate-gw")} == gateway_daemons, "the daemons were restarted"

    rotated = ACCESS_LOG.with_name(f"{ACCESS_LOG.name}.1")
    assert trace.request_id in rotated.read_text()
    after = call(admin_token, f"/gw/{name}/after-the-rotation")
    assert after.status == 200
    assert logged_by_apache(after.request_id), "Apache went on writing the rotated access log"

    report = json.loads(manage_ok("audit_access_log", "--prefix", f"/gw/{name}/", "--since", since, "--json"))
    assert [r["request_id"] for r in report["requests"]] == [trace.request_id]
