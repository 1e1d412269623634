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


SEGMENT_MAX = 100_000  # the most events one checkpoint seals (apps.audit.sealing.seal)


def test_the_api_verifies_the_whole_deployed_trail_in_bounded_pages(admin):
    """A page stops after the segment that reaches max_events, whatever the trail's size; the
    pages together cover what the host verified, and each tells when the host last did."""
    assert manage("audit_seal", "--all").returncode == 0
    host = manage("audit_verify", "--json", "--no-progress")
    assert host.returncode == 0, host.stdout[-2000:]
    whole = json.loads(host.stdout)
    url: str | None = f"{BASE_URL}/api/audit/verify?max_events=250000"
    pages = []
    while url:
        page = admin.get(url, timeout=60).json()
        assert page["ok"], page["problems"][:5]
        assert page["events_checked"] <= 250_000 + SEGMENT_MAX
        pages.append(page)
        url = page["next"]
    assert sum(page["events_checked"] for page in pages) >= whole["events_checked"]
    assert pages[0]["from_seq"] == whole["from_seq"] and pages[-1]["through_seq"] >= whole["through_seq"]
    last_full = pages[-1]["last_full_verification"]
    assert last_full["ok"] and last_full["through_seq"] >= whole["through_seq"]


def test_an_export_streams_from_the_deployed_api(admin):
    response = admin.get(f"{BASE_URL}/api/audit/events/export/", params={"format": "ndjson"}, timeout=60, stream=True)
    assert response.status_code == 200
    first = json.loads(next(response.iter_lines()))
    assert {"id", "event_type", "request_id"} <= first.keys()
