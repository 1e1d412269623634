"""What the gateway benchmark runs, and where: the scenarios, their ports and paths, and a run's shape.

Nothing here changes at run time: ``gateway_bench.py`` builds one :class:`Config` from its
command line and passes it to the servers, the runner and the report.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = Path(os.environ.get("AUDITGATE_BENCH_DIR", "/srv/auditgate-bench"))
CODE, VENV = RUN / "code", RUN / "venv"  # the working tree's copy that runs, and the bench venv
FIXTURES = CODE / "bench" / "fixtures"  # the servers' configs and the bench data, as copied
SPOOL = RUN / "spool"  # the daemons' audit outcome spool (apps.audit.spool)
USER = "auditgate"  # the deployed daemons' account; it reads RUN
SYSTEM_PYTHON = "/usr/bin/python3"
PORT = {"upstream": 18090, "nginx_proxy": 18091, "apache": 18081, "gunicorn": 18083, "nginx_gunicorn": 18093}
# The chain and slow scenarios: their nginx (plain for the client, TLS for the nested call), the
# private Apache's TLS port (the nested calls), upstream A of the chain, and the slow upstream.
PORT |= {"nginx_chain": 18094, "nginx_chain_tls": 18494, "apache_tls": 18443, "chain_a": 18095, "slow": 18096}
BODY = '{"id": 42, "name": "bench item", "tags": ["a", "b", "c"]}\n'
DATABASE = "bench_auditgate"
DEFINES = Path("/etc/apache2/conf-available/auditgate-defines.conf")  # the deployed values of the vhost's Defines
MPM = Path("/etc/apache2/conf-enabled/auditgate-mpm.conf")  # the deployed Apache worker sizing
# The client of the chain is an instrumented service: it starts the trace.
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
NESTED_TIMEOUT = 5.0  # upstream A's timeout for its nested call (connect, and each read)
SLOW_DELAY = 3.0  # the slow upstream's wait before it answers


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    path: str  # after http://127.0.0.1:
    auth: bool  # sends the bench token
    # "base": interleaved rounds at every concurrency; "chain" (client -> proxy -> A -> proxy -> B)
    # and "slow" (a 3 s upstream, many connections): after the rounds, one run each (runner.py).
    kind: str = "base"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.path}"

    def token(self, token: str) -> str:
        """The token this scenario sends: the bench token, or none."""
        return token if self.auth else ""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("upstream", "1 upstream alone (nginx)", f"{PORT['upstream']}/item", False),
    Scenario("nginx", "2 nginx proxy_pass", f"{PORT['nginx_proxy']}/item", False),
    Scenario("django", "3 Django view + requests (mod_wsgi)", f"{PORT['apache']}/bench/forward/item", False),
    Scenario("revproxy", "4 django-revproxy (mod_wsgi)", f"{PORT['apache']}/bench/revproxy/item", False),
    Scenario("auditgate", "5 auditgate gateway (mod_wsgi)", f"{PORT['apache']}/gw/bench/item", True),
    Scenario("gunicorn_nginx", "6 auditgate, nginx + gunicorn", f"{PORT['nginx_gunicorn']}/gw/bench/item", True),
    Scenario("gunicorn", "6b auditgate, bare gunicorn", f"{PORT['gunicorn']}/gw/bench/item", True),
    Scenario("api", "7 API: audit events, 1st page", f"{PORT['apache']}/api/audit/events/?upstream=bench", True),
)
# Upstream A answers /<via>/<path> by calling /<path> of B through the proxy named <via>, over
# https (servers.chain_upstream_config); B is the nginx upstream of scenario 1.
CHAIN: tuple[Scenario, ...] = (
    Scenario("chain_auditgate", "chain: auditgate", f"{PORT['apache']}/gw/chain-a/gate/item", True, "chain"),
    Scenario(
        "chain_revproxy", "chain: django-revproxy", f"{PORT['apache']}/bench/chain-a/revproxy/item", False, "chain"
    ),
    Scenario("chain_nginx", "chain: nginx proxy_pass", f"{PORT['nginx_chain']}/chain-a/nginx/item", False, "chain"),
)
SLOW: tuple[Scenario, ...] = (
    Scenario("slow_auditgate", "slow: auditgate", f"{PORT['apache']}/gw/slow/item", True, "slow"),
    Scenario("slow_revproxy", "slow: django-revproxy", f"{PORT['apache']}/bench/slow/item", False, "slow"),
    Scenario("slow_nginx", "slow: nginx proxy_pass", f"{PORT['nginx_chain']}/slow/item", False, "slow"),
)
ALL: tuple[Scenario, ...] = SCENARIOS + CHAIN + SLOW
KINDS = ("base", "chain", "slow")
BY_KEY = {scenario.key: scenario for scenario in ALL}


def select(keys: Iterable[str] | None, kinds: Iterable[str] = KINDS) -> tuple[Scenario, ...]:
    """The scenarios named and of the kinds named (in their usual order); all of them by default."""
    wanted, kinds = set(keys or BY_KEY), set(kinds)
    return tuple(scenario for scenario in ALL if scenario.key in wanted and scenario.kind in kinds)


@dataclass(frozen=True)
class Config:
    """One run's shape and levers, from the command line."""

    seconds: int = 5
    rounds: int = 3
    concurrencies: tuple[int, ...] = (1, 16, 64)
    scenarios: tuple[Scenario, ...] = ALL
    chain_seconds: int = 10  # longer than NESTED_TIMEOUT: a stuck nested call shows within the run
    chain_concurrencies: tuple[int, ...] | None = None  # None: 16, 64 and 4x the gateway's threads
    slow_seconds: int = 20
    slow_connections: int = 512
    # --define NAME=VALUE: a vhost Define changed for one run (the shape of the daemon groups);
    # --no-access-log: what Apache's access log costs.  Levers, measured one at a time.
    defines: Mapping[str, str] = field(default_factory=dict)
    access_log: bool = True
    # --hop-groups N: the private Apache declares gateway groups auditgate-gw1..N (copies of
    # auditgate-gw) when apache/vhost.conf declares none, to measure hop-level routing early.
    hop_groups: int = 0
    # --remote-db: the bench database on a MariaDB in a network namespace, 0.5 ms of round trip
    # away (remote_db.py): what the gateway's queries cost when the database is on another host.
    remote_db: bool = False
    # Some scenarios only, or a lever moved: the docs keep the last full run.
    partial: bool = False

    def of_kind(self, kind: str) -> tuple[Scenario, ...]:
        return tuple(scenario for scenario in self.scenarios if scenario.kind == kind)
