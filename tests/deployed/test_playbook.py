"""The deployment itself: a second playbook run changes nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.deployed

REPO = Path(__file__).resolve().parents[2]
# Without the test suite's own AUDITGATE_* settings (its database user must not leak into the deploy).
ANSIBLE_ENV = {
    **{name: value for name, value in os.environ.items() if not name.startswith("AUDITGATE_")},
    "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
}


def test_a_second_playbook_run_reports_no_changes():
    # make test ran the playbook just before the suite; this is at least the second run.
    result = subprocess.run(
        [str(REPO / ".venv-tools/bin/ansible-playbook"), "-i", "ansible/inventories/local", "ansible/site.yml"],
        cwd=REPO,
        env=ANSIBLE_ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    recap = re.findall(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", result.stdout, re.M)
    assert recap, result.stdout[-3000:]
    assert all(changed == "0" and failed == "0" for _, _, changed, _, failed in recap), result.stdout[-5000:]


def test_the_multi_host_example_inventory_is_valid():
    result = subprocess.run(
        [
            str(REPO / ".venv-tools/bin/ansible-playbook"),
            "--syntax-check",
            "-i",
            "ansible/inventories/example-multi",
            "ansible/site.yml",
        ],
        cwd=REPO,
        env=ANSIBLE_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_multi_host_example_grants_the_database_to_each_web_host():
    # debug runs on the controller: the example's hosts are never contacted.
    result = subprocess.run(
        [
            str(REPO / ".venv-tools/bin/ansible"),
            "db1",
            "-i",
            "ansible/inventories/example-multi",
            "-m",
            "ansible.builtin.debug",
            "-a",
            "var=database_app_hosts",
        ],
        cwd=REPO,
        env=ANSIBLE_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout.split("=>", 1)[1])["database_app_hosts"] == [
        "192.0.2.11",
        "192.0.2.12",
        "192.0.2.13",
    ]
