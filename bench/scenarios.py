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
USER = "auditgate"  # the deployed daemons' account; it reads RUN
SYSTEM_PYTHON = "/usr/bin/python3"
PORT = {"upstream": 18090, "nginx_proxy": 18091, "apache": 18081, "gunicorn": 18083, "nginx_gunicorn": 18093}
BODY = '{"id": 42, "name": "bench item", "tags": ["a", "b", "c"]}\n'
DATABASE = "bench_auditgate"


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    path: str  # after http://127.0.0.1:
    auth: bool  # sends the bench token

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
BY_KEY = {scenario.key: scenario for scenario in SCENARIOS}


def select(keys: Iterable[str] | None) -> tuple[Scenario, ...]:
    """The scenarios named (in their usual order), or all of them."""
    if not keys:
        return SCENARIOS
    wanted = set(keys)
    return tuple(scenario for scenario in SCENARIOS if scenario.key in wanted)


@dataclass(frozen=True)
class Config:
    """One run's shape and levers, from the command line."""

    seconds: int = 10
    rounds: int = 3
    concurrencies: tuple[int, ...] = (1, 16, 64)
    scenarios: tuple[Scenario, ...] = SCENARIOS
    # --define NAME=VALUE: a vhost Define changed for one run (the shape of the daemon groups);
    # --no-access-log: what Apache's access log costs.  Levers, measured one at a time.
    defines: Mapping[str, str] = field(default_factory=dict)
    access_log: bool = True
    # Some scenarios only, or a lever moved: the docs keep the last full run.
    partial: bool = False
