"""Running the gateway benchmark: ``wrk`` against each scenario, in interleaved rounds, and their medians."""

from __future__ import annotations

import os
import re
import signal
import statistics
import sys
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

from scenarios import BODY, FIXTURES, Config, Scenario
from servers import run


def busy_jiffies() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    """wrk's latency figures: 91.00us, 1.20ms, 2.00s, 1.02m."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(url: str, connections: int, seconds: int, token: str) -> dict[str, float]:
    """One wrk run; a run whose output cannot be read (seen once in a long series) is repeated once."""
    try:
        return wrk_once(url, connections, seconds, token)
    except RuntimeError as exc:
        print(f"repeating a run: {exc}", file=sys.stderr, flush=True)
        return wrk_once(url, connections, seconds, token)


def wrk_once(url: str, connections: int, seconds: int, token: str, *, timeout: str = "5s",
             headers: tuple[str, ...] = (), statuses: bool = False) -> dict:  # fmt: skip
    """One wrk run.  ``statuses``: count the answers by status code (``fixtures/statuses.lua``) and
    keep the kinds of errors apart: the long runs of the chain and slow scenarios."""
    sent = [*headers, f"Authorization: Token {token}"] if token else list(headers)
    options = [argument for header in sent for argument in ("-H", header)]
    if statuses:
        options += ["-s", str(FIXTURES / "statuses.lua")]
    threads = "1" if connections == 1 else "2"
    start = busy_jiffies()
    output = run("wrk", "-t", threads, "-c", str(connections), "-d", f"{seconds}s", "--latency", "--timeout", timeout,
                 *options, url, capture_output=True).stdout  # fmt: skip
    busy = (busy_jiffies() - start) / os.sysconf("SC_CLK_TCK")
    if "Latency Distribution" not in output or not re.search(r"^\s+99%\s+[\d.]+(us|ms|s|m|h)\s*$", output, re.M):
        raise RuntimeError(f"wrk printed no latencies for {url}:\n{output}")
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if statuses:
        return _long_run(output, requests, busy)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        # Anchored: "99%" also ends figures like "72.99%" in wrk's thread statistics.
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)),
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)),
        "cpu_s_per_1000": round(busy / max(requests, 1) * 1000, 3),
        "errors": errors + (int(non_2xx.group(1)) if non_2xx else 0),
    }


def _long_run(output: str, requests: int, busy: float) -> dict:
    """A chain or slow run: answers by status, socket errors by kind, and the latencies of all
    answers (its wrk timeout is longer than any answer can take: none is left out)."""
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    found = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if found:
        socket_errors = dict(zip(socket_errors, map(int, found.groups()), strict=True))
    statuses = {code: int(n) for code, n in re.findall(r"^status (\d+) (\d+)$", output, re.M)}
    ok = sum(n for code, n in statuses.items() if code.startswith("2"))
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "ok_rps": round(float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)) * ok / max(requests, 1), 2),
        "ok": ok,
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)),
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)),
        "max_ms": _ms(re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", output, re.M).group(1)),
        "statuses": dict(sorted(statuses.items())),
        "socket_errors": socket_errors,
        "failures": requests - ok + sum(socket_errors.values()),
        "cpu_s_per_1000": round(busy / max(requests, 1) * 1000, 3),
    }


def check(scenario: Scenario, token: str) -> None:
    """Each scenario must answer 200 (and the proxies the upstream's body) before it is timed."""
    sent = scenario.token(token)
    request = urllib.request.Request(scenario.url, headers={"Authorization": f"Token {sent}"} if sent else {})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        body = response.read().decode()
    if "/item" in scenario.url and body != BODY:
        raise RuntimeError(f"{scenario.url} answered {body[:200]!r}, not the upstream's body")


def measure(config: Config, token: str) -> dict[str, dict[int, list[dict]]]:
    scenarios = config.of_kind("base")
    runs: dict[str, dict[int, list[dict]]] = {s.key: {c: [] for c in config.concurrencies} for s in scenarios}
    for scenario in scenarios:
        check(scenario, token)
    for number in range(config.rounds):
        for connections in config.concurrencies:
            for scenario in scenarios:
                result = wrk(scenario.url, connections, config.seconds, scenario.token(token))
                runs[scenario.key][connections].append(result)
                print(f"round {number + 1}/{config.rounds} c={connections:<3} {scenario.label:<38} "
                      f"{result['rps']:>9.0f} req/s p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms",
                      flush=True)  # fmt: skip
                time.sleep(1)
    return runs


def serve(config: Config, token: str) -> None:
    """Keep the servers up until interrupted (SIGINT or SIGTERM); they are stopped on the way out."""
    for scenario in config.scenarios:
        print(f"{scenario.label:<38} {scenario.url}", flush=True)
    print(f"token: {token}\nserving; interrupt to stop", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with suppress(KeyboardInterrupt):
        signal.pause()


def medians(runs: dict[str, dict[int, list[dict]]]) -> dict[str, dict[int, dict[str, float]]]:
    return {
        key: {c: {m: round(statistics.median(r[m] for r in results), 3) for m in results[0]} | {
            "errors": sum(r["errors"] for r in results), "runs_rps": [r["rps"] for r in results]}
            for c, results in by_c.items()}
        for key, by_c in runs.items()
    }  # fmt: skip


def ratios(table: dict[str, dict[int, dict[str, float]]], concurrencies: tuple[int, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    if "auditgate" not in table:
        return out
    for c in concurrencies:
        gate = table["auditgate"][c]["rps"]
        for other in ("django", "revproxy", "gunicorn_nginx", "gunicorn"):
            if other in table:
                out[f"5/{other} c={c}"] = round(gate / table[other][c]["rps"], 2)
    if 1 in concurrencies and "upstream" in table:
        out["added p50 ms of 5 over 1, c=1"] = round(
            table["auditgate"][1]["p50_ms"] - table["upstream"][1]["p50_ms"], 3
        )
    return out
