"""Fixtures for the tests against the deployed system (``make deploy`` on this host).

They talk HTTPS to the real Apache + mod_wsgi + MariaDB, with the admin token the
playbook wrote.  Nothing is faked; without a deployment they fail, they never skip.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

BASE_URL = os.environ.get("AUDITGATE_TEST_URL", "https://localhost")
CA_FILE = os.environ.get("AUDITGATE_TEST_CA", "/etc/auditgate/tls/auditgate.crt")
ADMIN_TOKEN_FILE = Path(os.environ.get("AUDITGATE_TEST_ADMIN_TOKEN_FILE", "/etc/auditgate/admin-token"))
# How the tests run a management command on the deployed host (a private server may name its own).
MANAGE = os.environ.get("AUDITGATE_TEST_MANAGE", "/usr/local/sbin/auditgate-manage").split()
# Screenshots and fuzzing reports (gitignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DEFINES_FILE = Path("/etc/apache2/conf-available/auditgate-defines.conf")
SITE_FILE = Path("/etc/apache2/sites-available/auditgate.conf")
ACCESS_LOG = Path("/var/log/apache2/auditgate_access.log")


# Tests that stop or restart the host's MariaDB run only where that is allowed: with
# AUDITGATE_TEST_DB_RESTART=1, which `make test` sets (it owns the host it provisions; set 0 on a
# host shared with others).  Without it they are reported as skipped, never as passed.
needs_db_restart = pytest.mark.skipif(
    os.environ.get("AUDITGATE_TEST_DB_RESTART") != "1",
    reason="stops the host's MariaDB: set AUDITGATE_TEST_DB_RESTART=1 where that is allowed",
)


def apache_defines() -> dict[str, str]:
    """The ``Define NAME value`` lines the playbook wrote for the vhost."""
    return dict(re.findall(r"^Define\s+(\S+)\s+(.*?)\s*$", DEFINES_FILE.read_text(), re.MULTILINE))


def daemon_option(group: str, option: str) -> str:
    """An option of ``WSGIDaemonProcess <group>`` in the deployed site file, e.g. queue-timeout."""
    directive = re.search(rf"^\s*WSGIDaemonProcess {re.escape(group)} ((?:.*\\\n)*.*)$", SITE_FILE.read_text(), re.M)
    assert directive, f"no WSGIDaemonProcess {group}"
    value = re.search(rf"(?:^|\s){re.escape(option)}=(\S+)", directive.group(1)).group(1)
    return re.sub(r"\$\{(\w+)\}", lambda define: apache_defines()[define.group(1)], value)


def manage(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """A management command with the deployed settings, as the cron jobs run them."""
    # Not with the test suite's settings (their password hasher is not the server's).
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run([*MANAGE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def logged_by_apache(request_id: str) -> bool:
    """Apache writes the access log line after the response has gone out: allow it a moment."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if any(line.endswith(" " + request_id) for line in ACCESS_LOG.read_text().splitlines()[-500:]):
            return True
        time.sleep(0.05)
    return False


def daemons(group: str) -> list[tuple[int, str]]:
    """(pid, user) of this host's mod_wsgi daemon processes of ``group``, by their display-name.

    Only this PID namespace's: the multi-host tests' hosts (tests/multihost) run daemons of the
    same names in their own, which ``ps`` here lists too, and which no test here may count or kill."""
    output = subprocess.run(["ps", "-eo", "pid=,user:32=,args="], capture_output=True, text=True, check=True).stdout
    return [
        (int(pid), user)
        for pid, user, args in (line.split(None, 2) for line in output.splitlines())
        if args.split()[0] == f"({group})" and in_this_pid_namespace(int(pid))
    ]


def in_this_pid_namespace(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    except OSError:  # gone meanwhile
        return False


def settled_events(admin, params: dict[str, str], timeout: float = 5.0) -> list[dict]:
    """The audit events the API lists for ``params``, once every one has its outcome in MariaDB
    (a status or an error): a forwarded request's outcome is spooled and committed by its
    process's drainer a few milliseconds after the answer (apps.audit.spool,
    ``AUDIT_SPOOL_LINGER_SECONDS``)."""
    deadline = time.monotonic() + timeout
    while True:
        events = admin.get(f"{BASE_URL}/api/audit/events/", params=params, timeout=10).json()["results"]
        if all(e["status"] is not None or e["error"] for e in events) or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def settled_event(admin, request_id: str, timeout: float = 5.0) -> dict:
    """The one audit event of ``request_id``, with its outcome (see ``settled_events``)."""
    events = settled_events(admin, {"request_id": request_id}, timeout)
    assert len(events) == 1, events
    return events[0]


def manage_ok(*args: str, timeout: int = 120) -> str:
    """A management command that must succeed; its stdout."""
    result = manage(*args, timeout=timeout)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


# Every management scope (create_token gives none unless asked).
ALL_SCOPES = ("audit:read", "policy:read", "policy:write", "tokens:read", "tokens:write")


def fresh_token(username: str, *options: str) -> str:
    """A one-day token for ``username`` (created, as a service account, if missing): every
    upstream and every management scope, unless ``options`` (create_token's) say which."""
    args = ["create_token", username, "--create-user", "--label", "deployed tests", "--days", "1"]
    scopes = [arg for scope in ALL_SCOPES for arg in ("--scope", scope)]
    return manage_ok(*args, *(options or scopes)).strip()


@pytest.fixture(scope="session")
def admin_token() -> str:
    if not ADMIN_TOKEN_FILE.is_file():
        pytest.fail(f"{ADMIN_TOKEN_FILE} is missing: run `make deploy` first (make test does).")
    return ADMIN_TOKEN_FILE.read_text().strip()


def https_session() -> requests.Session:
    """An HTTPS session that verifies the deployment's own certificate.

    ``trust_env`` is off: otherwise REQUESTS_CA_BUNDLE in the environment silently
    replaces ``verify``, and proxy variables could route loopback traffic elsewhere.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = CA_FILE if BASE_URL.startswith("https:") else True
    return session


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    with https_session() as session:
        yield session


@pytest.fixture(scope="session")
def admin(admin_token) -> Iterator[requests.Session]:
    with https_session() as session:
        session.headers["Authorization"] = f"Token {admin_token}"
        yield session


@pytest.fixture
def register_upstream(admin, upstream_server) -> Iterator:
    """Registers upstreams pointing at the test's echo server, each with a rule that lets the
    admin GET and POST under ``path_pattern``; removed again afterwards (their audit events stay)."""
    created = []

    def register(path_pattern: str = "/allowed", **fields) -> str:
        name = f"t-{secrets.token_hex(4)}"
        payload = {"name": name, "base_url": upstream_server.url, "internal": True, **fields}
        response = admin.post(f"{BASE_URL}/api/upstreams/", json=payload)
        assert response.status_code == 201, response.text
        created.append(response.json()["url"])
        rule = {"upstream": name, "user": "admin", "methods": ["GET", "POST"], "path_pattern": path_pattern}
        assert admin.post(f"{BASE_URL}/api/rules/", json=rule).status_code == 201
        return name

    yield register
    for url in created:
        assert admin.delete(url).status_code == 204


@pytest.fixture
def registered_upstream(register_upstream) -> str:
    return register_upstream()
