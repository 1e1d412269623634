"""Service chains through the gate on the deployed Apache (issue 14, goals 1 and 2).

A service behind the gate that calls another service through the gate, while its own
request waits, is the seed's deadlock one level up: every gateway thread waiting on a
nested call that needs a gateway thread.  Each hop level has its own daemon group, chosen
by the gate-signed ``tracestate`` entry that services pass on (apps/gateway/tracing.py), so
at any load a request only waits on a higher level.

Load: closed loops at 4x the configured capacity of the level-0 group, chains of two and of
three levels.  The last service holds each request ``HOLD`` seconds: long enough that the
2-core test host's CPU is not what limits the run (then it would measure the CPU, not
starvation), short enough that waiting 3 x HOLD for a thread stays inside queue-timeout.
Figures go to test-artifacts/service-chains.txt.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from tests.deployed.conftest import BASE_URL, apache_defines, daemon_option, manage_ok
from tests.deployed.load import Outcome, closed_loop, describe, group_capacity, percentiles, record, retrying_session
from tests.upstream import CallbackUpstream

pytestmark = pytest.mark.deployed

HOLD = 5.0
_local = threading.local()
# What the services' own calls through the gate failed with (shown when a test fails).
service_failures: list[str] = []


def _session() -> requests.Session:
    """A service's (and a client's) session: it sends a GET again once when a reused
    connection was closed before any answer, as curl and browsers do (load.retrying_session)."""
    if not hasattr(_local, "session"):
        _local.session = retrying_session()
    return _local.session


def passing_trace_context_to(next_path: str, token: str, *, pass_context: bool = True, timeout: float = 90.0):
    """A service that, while answering, calls ``next_path`` through the gate, passing on the
    W3C trace context it received (what OpenTelemetry instrumentation does)."""

    def callback(handler) -> tuple[int, float]:
        headers = {"Authorization": f"Token {token}"}
        if pass_context:
            for name in ("traceparent", "tracestate"):
                if handler.headers.get(name):
                    headers[name] = handler.headers[name]
        started = time.monotonic()
        try:
            response = _session().get(f"{BASE_URL}{next_path}", headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            service_failures.append(repr(exc)[:300])
            return 599, time.monotonic() - started
        return response.status_code, time.monotonic() - started

    return callback


@pytest.fixture
def chain(register_upstream, admin_token):
    """``chain(levels)``: the path of a chain of ``levels`` gateway passes; the last service holds HOLD s."""
    with ExitStack() as stack:

        def make(levels: int, **options) -> str:
            path = f"/gw/{register_upstream('/')}/slow?seconds={HOLD}"
            for _ in range(levels - 1):
                service = stack.enter_context(CallbackUpstream(passing_trace_context_to(path, admin_token, **options)))
                path = f"/gw/{register_upstream('/', base_url=service.url)}/call"
            time.sleep(1.1)  # the documented bound for a new upstream to reach every process
            return path

        yield make


def _get(token: str, path: str) -> Outcome:
    """One client request, with the same retry as the services (see ``_session``)."""
    started = time.monotonic()
    try:
        response = _session().get(f"{BASE_URL}{path}", headers={"Authorization": f"Token {token}"}, timeout=120)
    except requests.RequestException as exc:
        return Outcome(None, time.monotonic() - started, started, error="connection", detail=repr(exc)[:300])
    return Outcome(response.status_code, time.monotonic() - started, started, response.headers.get("X-Request-ID", ""))


def _run(path: str, admin_token: str, concurrency: int, seconds: float) -> list[Outcome]:
    return closed_loop(concurrency, seconds, lambda: _get(admin_token, path))


@pytest.mark.parametrize("levels", [2, 3])
def test_chains_at_4x_capacity_never_starve(chain, admin, admin_token, levels):
    capacity = group_capacity("GW")
    path = chain(levels)
    concurrency = 4 * capacity
    outcomes = _run(path, admin_token, concurrency, seconds=2 * HOLD)
    label = f"chain of {levels} levels at 4x ({concurrency} concurrent, last service holds {HOLD:g} s)"
    record("service-chains.txt", f"{label}: {describe(outcomes)}")
    failed = [o for o in outcomes if o.status != 200]
    details = [o.detail for o in failed][:3]
    assert not failed, (
        f"{len(failed)} of {len(outcomes)}: {describe(failed)}; {details}; services: {service_failures[:3]}"
    )
    assert len(outcomes) >= capacity, "at least a full round of the level-0 group"

    # The causal chain is in the trail: every nested event names its parent, up to the user's request.
    one = outcomes[-1].request_id
    (outer,) = admin.get(f"{BASE_URL}/api/audit/events/", params={"request_id": one}).json()["results"]
    tree = admin.get(f"{BASE_URL}/api/audit/events/{outer['id']}/chain/").json()
    depth, node = 1, tree["tree"]
    while node["children"]:
        (node,) = node["children"]
        depth += 1
    assert depth == levels
    assert node["event"]["trace_id"] == outer["trace_id"] != ""


def test_nested_calls_run_in_the_daemon_group_of_their_level(chain, admin, admin_token):
    """Each level's event was written by a process of that level's group (the event's worker pid)."""
    path = chain(3)
    response = _session().get(f"{BASE_URL}{path}", headers={"Authorization": f"Token {admin_token}"}, timeout=60)
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    (outer,) = admin.get(f"{BASE_URL}/api/audit/events/", params={"request_id": request_id}).json()["results"]
    tree = admin.get(f"{BASE_URL}/api/audit/events/{outer['id']}/chain/").json()["tree"]
    ids = []
    node = tree
    while node:
        ids.append(node["event"]["id"])
        node = node["children"][0] if node["children"] else None
    # The worker (host/pid@start) is not in the API: read it as the operator would.
    code = f"from apps.audit.models import AuditEvent as E; print(*(E.objects.get(pk=i).worker for i in {ids}))"
    workers = manage_ok("shell", "--no-imports", "-c", code).split()
    groups = []
    for worker in workers:
        pid = int(worker.split("/")[1].split("@")[0])
        groups.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode().strip())
    assert groups == ["(auditgate-gw)", "(auditgate-gw1)", "(auditgate-gw2)"]


def test_a_service_that_drops_the_trace_context_gets_a_bounded_refusal_not_a_hang(chain, admin_token):
    """Its nested calls land in level 0 with their parents.  When level 0 is full of parents,
    nothing frees a thread until the parents' upstream read timeout cuts them (504
    upstream_read_timeout); their children, picked up after waiting longer than
    queue-timeout, get 504 at once.  Bounded by the read timeout, never a hang."""
    queue_timeout = float(daemon_option("auditgate-gw", "queue-timeout"))
    read_timeout = 30.0  # the upstreams' default read_timeout
    path = chain(2, pass_context=False, timeout=read_timeout + queue_timeout + 30)
    concurrency = 2 * group_capacity("GW")
    outcomes = _run(path, admin_token, concurrency, seconds=HOLD)
    record("service-chains.txt", f"chain without trace context at {concurrency} concurrent: {describe(outcomes)}")
    assert {o.status for o in outcomes} <= {200, 502, 504}, describe(outcomes)
    assert any(o.status != 200 for o in outcomes), "level 0 full of parents must refuse their children"
    # The bound: the parents' read timeout, plus the wait of the parents queued behind them.
    bound = 2 * read_timeout + HOLD + 10
    assert percentiles([o.seconds for o in outcomes])["max"] < bound, describe(outcomes)


def test_a_forged_level_is_refused_fast_with_400_and_audited(admin, admin_token, register_upstream):
    name = register_upstream("/")
    time.sleep(1.1)
    headers = {
        "Authorization": f"Token {admin_token}",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "auditgate=1-1-9999999999-" + "0" * 32,
    }
    started = time.monotonic()
    response = _session().get(f"{BASE_URL}/gw/{name}/allowed", headers=headers, timeout=30)
    assert time.monotonic() - started < 2
    assert (response.status_code, response.json()["code"]) == (400, "invalid_trace_context")
    (event,) = admin.get(
        f"{BASE_URL}/api/audit/events/", params={"request_id": response.headers["X-Request-ID"]}
    ).json()["results"]
    assert (event["decision"], event["reason"]) == ("deny", "invalid_trace_context")
    assert apache_defines()["AUDITGATE_GW_PROCESSES"]  # the groups exist as deployed
