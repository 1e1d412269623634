"""The deployment itself: a second playbook run changes nothing; the example inventory is sound."""

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


SEAL_KEY_CHECK = "Check that the audit seal key id names a key of the ring, and the keys are long enough"
PEPPER_CHECK = "Check that the token pepper id names a pepper, and the peppers are long enough"


def run_ansible(tool: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    command = [str(REPO / ".venv-tools" / "bin" / tool), *args]
    return subprocess.run(command, cwd=REPO, env=ANSIBLE_ENV, capture_output=True, text=True, timeout=timeout)


def ansible(tool: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """``run_ansible`` that must succeed."""
    result = run_ansible(tool, *args, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_a_second_playbook_run_reports_no_changes():
    # make test ran the playbook just before the suite; this is at least the second run.
    output = ansible("ansible-playbook", "-i", "ansible/inventories/local", "ansible/site.yml").stdout
    recap = re.findall(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M)
    assert recap, output[-3000:]
    assert all(changed == "0" and failed == "0" for _, _, changed, _, failed in recap), output[-5000:]


def test_the_multi_host_example_inventory_is_valid():
    ansible("ansible-playbook", "--syntax-check", "-i", "ansible/inventories/example-multi", "ansible/site.yml")


def test_the_multi_host_example_grants_the_database_to_each_web_host():
    # debug runs on the controller: the example's hosts are never contacted.
    output = ansible(
        "ansible", "db1", "-i", "ansible/inventories/example-multi", "-m", "ansible.builtin.debug",
        "-a", "var=database_app_hosts",
    ).stdout  # fmt: skip
    granted = json.loads(output.split("=>", 1)[1])["database_app_hosts"]
    assert granted == ["192.0.2.11", "192.0.2.12"]


@pytest.mark.parametrize(
    ("variable", "check", "message"),
    [
        # Without a ring listed, the generated key stays key 1: a new current id alone must not
        # rename it (every older checkpoint would then name an unknown key).
        ("app_audit_seal_key_id", SEAL_KEY_CHECK, "app_audit_seal_key_id must name a key of app_audit_seal_keys"),
        # The app would refuse to start after the deploy.
        ("app_token_pepper_id", PEPPER_CHECK, "app_token_pepper_id must name a pepper of app_token_peppers"),
    ],
)
def test_pointing_a_key_id_at_a_key_not_in_its_set_stops_the_deploy_before_any_change(variable, check, message):
    result = run_ansible("ansible-playbook", "-i", "ansible/inventories/local", "ansible/site.yml",
                         "--check", "-e", f"{variable}=2", "--start-at-task", check, timeout=600)  # fmt: skip
    assert result.returncode != 0
    assert message in result.stdout, result.stdout[-3000:]
    assert re.search(r"changed=0 .*failed=1", result.stdout), result.stdout[-3000:]
