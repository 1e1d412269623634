"""The chain and slow scenarios (``--scenarios chain,slow``), after the interleaved rounds.

**chain**: client -> proxy -> upstream A -> the same proxy, over https -> B (``upstreams.py``).
Through auditgate, A's nested call is a second gateway request: while the first holds a thread
of the gateway group, the second needs another one, so the chain measures whether nested calls
can starve (the hop-level groups of ``apps.gateway.tracing`` exist to prevent it).  One run per
proxy and concurrency: 16, 64 and 4x the gateway's threads, each as long as ``chain_seconds``,
longer than A's nested-call timeout, so a stuck call shows as a failure within the run.

**slow**: an upstream that answers after 3 s, ``slow_connections`` clients for ``slow_seconds``,
and the resident memory of the processes that hold the connections, sampled during the run.

Every run counts the answers by status and the socket errors by kind; after each, the gateway
group is given time to drain (``settle``) so that no run inherits the last one's queue.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

from profiling import rss_by_role
from runner import wrk_once
from scenarios import BODY, BY_KEY, TRACEPARENT, Config, Scenario


def probe(scenario: Scenario, token: str, timeout: float = 30) -> str:
    """One request; what it got, in words (never raises: a failing chain is a result)."""
    sent = scenario.token(token)
    headers = {"traceparent": TRACEPARENT} | ({"Authorization": f"Token {sent}"} if sent else {})
    request = urllib.request.Request(scenario.url, headers=headers)  # noqa: S310 - loopback
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, body = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return f"no answer: {exc!r}"
    took = f"{(time.monotonic() - started) * 1000:.0f} ms"
    return f"{status}, the upstream's body, {took}" if body == BODY else f"{status} {body.strip()[:200]!r}, {took}"


def settle(token: str, limit: float = 90) -> float:
    """Wait until the gateway group answers again (a request queued now is served after every
    request queued before it: its threads and backlog have drained); the seconds it took."""
    started = time.monotonic()
    while (waited := time.monotonic() - started) < limit:
        if probe(BY_KEY["auditgate"], token, timeout=limit - waited).startswith("200, the upstream's body"):
            return round(time.monotonic() - started, 1)
        time.sleep(0.5)
    print(f"the gateway group did not drain within {limit} s", flush=True)
    return limit


def chain_concurrencies(config: Config, capacity: int) -> tuple[int, ...]:
    """16 and 64, and 4x the gateway's threads where that is cheap on two cores (up to 512)."""
    return config.chain_concurrencies or tuple(sorted({16, 64} | ({4 * capacity} if 4 * capacity <= 512 else set())))


def _line(label: str, c: int, result: dict) -> str:
    return (
        f"{label:<24} c={c:<4} {result['ok_rps']:>8.1f} ok/s p50 {result['p50_ms']:.1f} ms "
        f"p99 {result['p99_ms']:.1f} ms, statuses {result['statuses']}, socket errors {result['socket_errors']}"
    )


def measure_chain(config: Config, token: str, capacity: int) -> dict:
    scenarios = config.of_kind("chain")
    checks = {scenario.key: probe(scenario, token) for scenario in scenarios}
    for key, seen in checks.items():
        print(f"check {key}: {seen}", flush=True)
    for scenario in scenarios:  # every hop level's daemons, and A's connections, warm
        wrk_once(scenario.url, 16, 2, scenario.token(token), timeout="30s", headers=(f"traceparent: {TRACEPARENT}",))
        settle(token)
    runs: dict[str, dict[int, dict]] = {scenario.key: {} for scenario in scenarios}
    for connections in chain_concurrencies(config, capacity):
        for scenario in scenarios:
            result = wrk_once(scenario.url, connections, config.chain_seconds, scenario.token(token),
                              timeout="30s", headers=(f"traceparent: {TRACEPARENT}",), statuses=True)  # fmt: skip
            result["settle_s"] = settle(token)
            runs[scenario.key][connections] = result
            print(_line(scenario.label, connections, result), flush=True)
    return {"seconds": config.chain_seconds, "checks": checks, "runs": runs}


class MemorySampler(threading.Thread):
    """Peak resident memory by role (``profiling.rss_by_role``), sampled every half second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.before = rss_by_role()
        self.peak = dict(self.before)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            for role, mib in rss_by_role().items():
                self.peak[role] = max(self.peak.get(role, 0.0), mib)

    def stop(self) -> dict[str, dict[str, float]]:
        self.stopping.set()
        self.join()
        return {role: {"before_mib": round(self.before.get(role, 0.0), 1), "peak_mib": round(peak, 1)}
                for role, peak in sorted(self.peak.items())}  # fmt: skip


def measure_slow(config: Config, token: str) -> dict:
    scenarios = config.of_kind("slow")
    checks = {scenario.key: probe(scenario, token) for scenario in scenarios}
    runs = {}
    for scenario in scenarios:
        sampler = MemorySampler()
        sampler.start()
        result = wrk_once(scenario.url, config.slow_connections, config.slow_seconds, scenario.token(token),
                          timeout="60s", statuses=True)  # fmt: skip
        result["memory"] = sampler.stop()
        result["settle_s"] = settle(token)
        runs[scenario.key] = result
        print(_line(scenario.label, config.slow_connections, result), f"memory {result['memory']}", flush=True)
    return {"seconds": config.slow_seconds, "connections": config.slow_connections, "checks": checks, "runs": runs}
