"""The audit trail on the deployed host: housekeeping in place, verification from the host."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.deployed.conftest import BASE_URL

pytestmark = pytest.mark.deployed


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/local/sbin/auditgate-manage", *args], capture_output=True, text=True, timeout=600)


def test_cron_closes_interrupted_attempts_and_seals_every_minute():
    crontab = Path("/etc/cron.d/auditgate").read_text()
    assert "audit_reconcile" in crontab and "audit_seal" in crontab
    assert "audit_witness" in crontab
    # This host's cron (the multi-host tests' hosts run their own, in their own PID namespaces).
    this_host = ["--ns", str(os.getpid()), "--nslist", "pid"]
    assert subprocess.run(["pgrep", "-x", *this_host, "cron"], capture_output=True).returncode == 0


def test_the_seal_key_is_kept_from_the_web_daemons():
    seal_env = Path("/etc/auditgate/seal.env")
    assert oct(seal_env.stat().st_mode & 0o777) == "0o600"
    assert seal_env.stat().st_uid == 0


def test_the_host_verifies_the_whole_trail_with_signatures_and_the_checkpoint_file():
    sealed = manage("audit_seal", "--all")
    assert sealed.returncode == 0, sealed.stderr
    result = manage("audit_verify", "--json", "--no-progress")
    report = json.loads(result.stdout)
    assert result.returncode == 0, report["problems"][:5]
    assert report["ok"] and report["signatures_checked"] and report["checkpoint_file_checked"]


def test_auditors_verify_and_read_stats_through_the_api(admin, registered_upstream):
    admin.get(f"{BASE_URL}/gw/{registered_upstream}/allowed/stats", timeout=10)
    verify = admin.get(f"{BASE_URL}/api/audit/verify", timeout=60).json()
    assert verify["ok"], verify["problems"][:5]
    stats = admin.get(f"{BASE_URL}/api/audit/stats", params={"upstream": registered_upstream}, timeout=30).json()
    assert sum(c["count"] for c in stats["counts"]) >= 1
    assert stats["latency_ms"]["p50"] > 0


def test_an_export_streams_from_the_deployed_api(admin):
    response = admin.get(f"{BASE_URL}/api/audit/events/export/", params={"format": "ndjson"}, timeout=60, stream=True)
    assert response.status_code == 200
    first = json.loads(next(response.iter_lines()))
    assert {"id", "event_type", "request_id"} <= first.keys()
