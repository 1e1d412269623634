"""Bounded load against the deployed gateway, on loopback: bursts and timed closed loops.

Every request has a client timeout, so a hang shows up as a ``timeout`` outcome instead of
a stuck test; every loop stops at its deadline.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tests.deployed.conftest import BASE_URL, apache_defines, https_session

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: no HTTP answer (timeout or connection error)
    seconds: float
    started: float = 0.0  # time.monotonic() when it was sent
    request_id: str = ""
    error: str = ""  # "timeout", "connection" or ""
    code: str = ""  # the JSON "code" of an auditgate error answer, or ""
    detail: str = ""  # what the client library said, for a failure without an answer


def group_capacity(name: str = "GW") -> int:
    """Threads of a daemon group as deployed (processes x threads)."""
    defines = apache_defines()
    return int(defines[f"AUDITGATE_{name}_PROCESSES"]) * int(defines[f"AUDITGATE_{name}_THREADS"])


_local = threading.local()


class CountedRetry(Retry):
    """Counts the retries it allows (the load tests report them)."""

    count = 0

    def increment(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        CountedRetry.count += 1
        return super().increment(*args, **kwargs)


def retrying_session() -> requests.Session:
    """An HTTPS session that sends a GET again, once, when a connection it reused was closed
    before any answer came, as curl and browsers do (RFC 9112 9.3.1).  Under thousands of
    concurrent requests an Apache child whose workers are all busy closes its idle keep-alive
    connections (mpm_event); a request sent on one at that moment never reached the gateway
    (no audit event, nothing forwarded), so sending it again is safe.  Every retry is counted
    (``CountedRetry.count``) and the tests record the count beside their figures."""
    session = https_session()
    retry = CountedRetry(total=1, connect=1, read=1, status=0, other=0, allowed_methods={"GET"}, raise_on_status=False)
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def _session(token: str) -> requests.Session:
    if getattr(_local, "token", None) != token:
        _local.session = retrying_session()
        _local.session.headers["Authorization"] = f"Token {token}"
        _local.token = token
    return _local.session


def call(token: str, path: str, timeout: float = 30.0, method: str = "GET") -> Outcome:
    started = time.monotonic()
    try:
        response = _session(token).request(method, f"{BASE_URL}{path}", timeout=timeout)
    except requests.Timeout:
        return Outcome(None, time.monotonic() - started, started, error="timeout")
    except requests.ConnectionError as exc:
        _local.token = None  # a fresh connection next time
        return Outcome(None, time.monotonic() - started, started, error="connection", detail=repr(exc)[:300])
    seconds = time.monotonic() - started
    code = ""
    if response.headers.get("Content-Type", "").startswith("application/json") and response.status_code >= 400:
        try:
            code = str(response.json().get("code", ""))
        except ValueError:
            code = ""
    return Outcome(response.status_code, seconds, started, response.headers.get("X-Request-ID", ""), code=code)


def burst(concurrency: int, request: Callable[[], Outcome]) -> list[Outcome]:
    """``concurrency`` requests released at the same moment."""
    barrier = threading.Barrier(concurrency)

    def one() -> Outcome:
        barrier.wait(timeout=60)
        return request()

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda _: one(), range(concurrency)))


def closed_loop(concurrency: int, seconds: float, request: Callable[[], Outcome]) -> list[Outcome]:
    """``concurrency`` clients, each sending its next request when its last one ends, for ``seconds``."""
    CountedRetry.count = 0
    deadline = time.monotonic() + seconds
    results: list[Outcome] = []
    lock = threading.Lock()

    def client() -> None:
        while time.monotonic() < deadline:
            outcome = request()
            with lock:
                results.append(outcome)

    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    return results


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": ordered[-1]}


def describe(outcomes: list[Outcome]) -> str:
    counts = Counter(o.status if o.status is not None else o.error for o in outcomes)
    timing = " ".join(f"{k} {v * 1000:.0f} ms" for k, v in percentiles([o.seconds for o in outcomes]).items())
    retried = (
        f"; {CountedRetry.count} GETs sent again after a closed keep-alive connection" if CountedRetry.count else ""
    )
    return f"{len(outcomes)} requests, by status {dict(sorted(counts.items(), key=str))}; latency {timing}{retried}"


def record(artifact: str, line: str) -> None:
    """Print a measured figure and keep it in test-artifacts/ for the docs."""
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / artifact).open("a") as handle:
        handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
    print(line)
