"""The deployed test cluster: ansible-playbook runs against the rig, HTTPS through its balancer,
management commands and SQL on its hosts over ssh, and load that counts every answer.

The hosts are the rig's (``tests.multihost.rig``); the inventory is ``ansible/inventories/test-multi``
with a vault the tests make (``ansible/bin/new-vault``). Traffic goes from this machine's bridge
address to the balancer, and nowhere else.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from tests.multihost.rig import HOSTS, STATE_DIR, Rig

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "ansible/inventories/test-multi"
VAULT_FILE = INVENTORY / "group_vars/all/vault.yml"
VAULT_PASSWORD = STATE_DIR / "vault-password"
TOOLS = REPO / ".venv-tools/bin"
ARTIFACTS = REPO / "test-artifacts"
SERVER_NAME = "gate.auditgate.test"
BALANCER = HOSTS["lb1"]
WEB_HOSTS = ("web1", "web2")


def make_vault() -> None:
    """The inventory's vault, once: the same secrets for every host, from ansible-vault."""
    if not VAULT_PASSWORD.exists():
        VAULT_PASSWORD.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        VAULT_PASSWORD.write_text(secrets.token_urlsafe(32) + "\n")
        VAULT_PASSWORD.chmod(0o600)
        VAULT_FILE.unlink(missing_ok=True)  # a new password needs a new vault
    subprocess.run(
        [str(TOOLS / "python"), str(REPO / "ansible/bin/new-vault"), str(VAULT_FILE),
         "--vault-password-file", str(VAULT_PASSWORD)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip


@dataclass
class PlaybookRun:
    returncode: int
    output: str
    seconds: float

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP counters per host: {"web1": {"ok": 74, "changed": 0, ...}}."""
        return {
            host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
            for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", self.output, re.M)
        }


def playbook(playbook: str, *args: str, label: str, timeout: float = 1200) -> PlaybookRun:
    """ansible-playbook on the test inventory (the output goes to test-artifacts/multihost-<label>.log)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    command = [str(TOOLS / "ansible-playbook"), "-i", str(INVENTORY), "--vault-password-file", str(VAULT_PASSWORD),
               str(REPO / "ansible" / playbook), *args]  # fmt: skip
    return run_logged(command, label=label, env=env, timeout=timeout)


def run_logged(command: list[str], *, label: str, env: dict[str, str], timeout: float) -> PlaybookRun:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"multihost-{label}.log").write_text(result.stdout + result.stderr)
    return PlaybookRun(result.returncode, result.stdout + result.stderr, time.monotonic() - started)


def record(line: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "multihost.txt").open("a") as out:
        out.write(line + "\n")


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: no HTTP answer (connection refused, reset, timeout)
    request_id: str
    error: str = ""


class Cluster:
    """The deployed cluster, seen from this machine: the balancer's URL and ssh to every host."""

    def __init__(self, rig: Rig):
        self.rig = rig
        self.admin_token = self.ssh("web1", "cat /etc/auditgate/admin-token").stdout.strip()

    def ssh(
        self, host: str, command: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self.rig.ssh(host, command, check=check, timeout=timeout)

    def manage(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        """A management command on a web host, as its cron jobs run them."""
        return self.ssh(host, shlex.join(["/usr/local/sbin/auditgate-manage", *args]), check=False)

    def sql(self, host: str, query: str) -> str:
        """A query as root on a database host (unix socket); tab-separated rows."""
        return self.ssh(host, f"mariadb -N -B auditgate -e {shlex.quote(query)}").stdout.strip()

    def url(self, path: str) -> str:
        """A URL through the balancer, for a path or for a URL the API returned (with the server name)."""
        parts = urlsplit(path)
        return f"https://{BALANCER}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    def session(self, token: str | None = None) -> requests.Session:
        session = requests.Session()
        # Each web host's own self-signed certificate comes through (TLS is passed through), for
        # a name the tests reach by address; and no proxy or CA bundle from the environment.
        session.trust_env = False
        session.verify = False
        session.headers["Host"] = SERVER_NAME
        session.headers["Authorization"] = f"Token {token or self.admin_token}"
        return session

    def health(self) -> dict:
        response = self.session().get(self.url("/api/health/"), timeout=10)
        return {"http_status": response.status_code, **response.json()}

    def haproxy(self, command: str) -> str:
        """A command to HAProxy's runtime API on the balancer."""
        script = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock'); "
        script += "s.sendall(sys.argv[1].encode() + b'\\n'); print(s.makefile().read())"
        return self.ssh("lb1", f"python3 -c {shlex.quote(script)} {shlex.quote(command)}").stdout

    def balancer_servers(self) -> dict[str, str]:
        """{"web1": "UP", ...} from HAProxy's runtime API ("UP 1/2", going down, counts as UP)."""
        rows = self.haproxy("show stat").splitlines()
        return {row.split(",")[1]: row.split(",")[17].split()[0] for row in rows if row.startswith("web,web")}

    @contextmanager
    def only(self, host: str) -> Iterator[None]:
        """New connections go to ``host`` alone: the other web hosts are set to drain meanwhile."""
        others = [other for other in WEB_HOSTS if other != host]
        for other in others:
            self.haproxy(f"set server web/{other} state drain")
        try:
            yield
        finally:
            for other in others:
                self.haproxy(f"set server web/{other} state ready")

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.5)

    def register_upstream(self, base_url: str) -> str:
        """An internal upstream at base_url (on this machine's bridge address) the admin may GET."""
        name = f"mh-{secrets.token_hex(4)}"
        admin = self.session()
        response = admin.post(self.url("/api/upstreams/"), json={"name": name, "base_url": base_url, "internal": True})
        assert response.status_code == 201, response.text
        rule = {"upstream": name, "user": "admin", "methods": ["GET"], "path_pattern": "/"}
        response = admin.post(self.url("/api/rules/"), json=rule)
        assert response.status_code == 201, response.text
        return name

    def call(self, path: str, timeout: float = 30) -> Outcome:
        """One request on a new connection through the balancer (so each is balanced anew)."""
        try:
            with self.session() as session:
                response = session.get(self.url(path), timeout=timeout, headers={"Connection": "close"})
                return Outcome(response.status_code, response.headers.get("X-Request-ID", ""), response.text[:200])
        except requests.RequestException as exc:
            return Outcome(None, "", type(exc).__name__)

    def gateway_events(self, upstream: str) -> list[dict]:
        """The gateway events of ``upstream`` (the NDJSON export has every field)."""
        response = self.session().get(self.url("/api/audit/events/export/"),
                                      params={"format": "ndjson", "upstream": upstream}, timeout=120)  # fmt: skip
        assert response.status_code == 200, response.text
        return [e for e in map(json.loads, response.iter_lines()) if e["event_type"].startswith("gateway.")]


@dataclass
class Load:
    """``concurrency`` clients calling ``path`` in a closed loop until stopped."""

    cluster: Cluster
    path: str
    concurrency: int
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _client(self) -> None:
        while not self._stop.is_set():
            self.outcomes.append(self.cluster.call(self.path))

    @contextmanager
    def running(self) -> Iterator[Load]:
        threads = [threading.Thread(target=self._client) for _ in range(self.concurrency)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join()

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]

    def describe(self) -> str:
        statuses: dict[str, int] = {}
        for outcome in self.outcomes:
            key = str(outcome.status or outcome.error)
            statuses[key] = statuses.get(key, 0) + 1
        return f"{len(self.outcomes)} requests: {statuses}"


def check_trail(cluster: Cluster, upstream: str, load: Load) -> dict[str, int]:
    """Every attempt of ``upstream`` has one outcome (closed as interrupted where its process
    died), no request id twice, every answered request recorded with its status."""
    for host in WEB_HOSTS:
        closed = cluster.manage(host, "audit_reconcile")
        assert closed.returncode == 0, closed.stderr
    events: list[dict] = []

    def settled() -> bool:
        events[:] = cluster.gateway_events(upstream)
        return all(e["completed_at"] for e in events)

    cluster.wait_until(settled, "every attempt's outcome", timeout=30)
    ids = [e["request_id"] for e in events]
    assert len(ids) == len(set(ids)), "a request id recorded twice"
    by_id = {e["request_id"]: e for e in events}
    answered = [o for o in load.outcomes if o.status is not None]
    missing = [o for o in answered if by_id.get(o.request_id, {}).get("status") != o.status]
    assert not missing, f"answered requests not recorded with their status: {missing[:5]}"
    interrupted = sum(1 for e in events if e["error"] == "interrupted")
    return {"requests": len(load.outcomes), "failed": len(load.failed), "audited": len(events),
            "interrupted": interrupted}  # fmt: skip
