"""Slow upstreams do not fill the gate (issue 14, goal 3): a gateway thread that waits on an
upstream holds no GIL and little memory, so each hop level's group carries 512 requests in
flight.  Figures (latency, memory of the gateway daemons) go to test-artifacts/slow-upstreams.txt.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.deployed.conftest import daemons
from tests.deployed.load import call, closed_loop, describe, group_capacity, percentiles, record

pytestmark = pytest.mark.deployed

UPSTREAM_SECONDS = 3
IN_FLIGHT = 512


def _rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def test_512_requests_in_flight_on_a_3_second_upstream_are_all_served_at_once(register_upstream, admin_token):
    assert group_capacity("GW") >= IN_FLIGHT, "the deployment's level-0 group must hold 512 threads"
    name = register_upstream("/")
    time.sleep(1.1)
    pids = [pid for pid, _ in daemons("auditgate-gw")]
    before = _rss_kib(pids)
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            peak.append(_rss_kib(pids))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    path = f"/gw/{name}/slow?seconds={UPSTREAM_SECONDS}"
    try:
        outcomes = closed_loop(IN_FLIGHT, 3 * UPSTREAM_SECONDS, lambda: call(admin_token, path, timeout=60))
    finally:
        stop.set()
        sampler.join()
    latency = percentiles([o.seconds for o in outcomes])
    record("slow-upstreams.txt", f"{IN_FLIGHT} in flight on a {UPSTREAM_SECONDS} s upstream: {describe(outcomes)}")
    record("slow-upstreams.txt", f"  gateway daemons (level 0) RSS: {before // 1024} MiB before, "
                                 f"{max(peak) // 1024} MiB at peak, {(max(peak) - before) / IN_FLIGHT:.0f} KiB "
                                 f"per request in flight")  # fmt: skip
    assert {o.status for o in outcomes} == {200}, describe(outcomes)
    # All at once, not in turns: a request that had waited for a thread would take two upstream times.
    assert latency["p99"] < 2 * UPSTREAM_SECONDS, describe(outcomes)
    assert len(outcomes) >= 2 * IN_FLIGHT
