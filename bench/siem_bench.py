#!/usr/bin/env python3
"""SIEM streaming benchmark on this host (loopback): events per second through each sink, and the
lag from an event's completion to its arrival at the receiver.

Against the deployed site (``make deploy``), as root: the deployed ``audit_stream`` (through
auditgate-manage) streams to an rsyslogd of the bench's own (TLS, octet-counted) and to an HTTPS
webhook receiver in this process, under cursors of the bench's own, forgotten at the end.

* Throughput: a backlog of gateway events is made while no streamer runs, then one drains it;
  events/s = events / (last arrival - first arrival).
* Lag: a streamer runs while gateway traffic flows; per event, receiver arrival time minus its
  ``completed_at`` (p50/p99).

    .venv/bin/python bench/siem_bench.py [--backlog-seconds 15] [--live-seconds 15] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "site")]

import orjson  # noqa: E402

from tests.deployed.conftest import BASE_URL, MANAGE, https_session  # noqa: E402
from tests.deployed.load import call, closed_loop  # noqa: E402
from tests.siem.receivers import Rsyslog  # noqa: E402
from tests.tls import TestCA  # noqa: E402
from tests.upstream import Upstream  # noqa: E402
from tests.webhook_receiver import WebhookReceiver  # noqa: E402

BOM = b"\xef\xbb\xbf"


def manage(*args: str, timeout: float = 600) -> str:
    result = subprocess.run([*MANAGE, *args], capture_output=True, text=True, timeout=timeout)  # noqa: S603 - ours
    if result.returncode:
        raise SystemExit(f"{' '.join(args)}: {result.stderr[-2000:]}")
    return result.stdout


def arrivals_syslog(lines: list[bytes]) -> list[tuple[float, dict]]:
    out = []
    for line in lines:
        stamp, _, rest = line.partition(b" ")
        out.append((float(stamp), orjson.loads(rest.partition(BOM)[2])))
    return out


def arrivals_webhook(hook: WebhookReceiver) -> list[tuple[float, dict]]:
    return [(received.at, orjson.loads(line)) for received in hook.accepted() for line in received.lines()]


def figures(arrivals: list[tuple[float, dict]], ids: set[int]) -> dict[str, float]:
    events = {}
    for at, fields in arrivals:
        if fields.get("id") in ids and fields["id"] not in events:
            events[fields["id"]] = (at, fields)
    times = sorted(at for at, _ in events.values())
    lags = sorted(at - datetime.fromisoformat(f["completed_at"]).timestamp() for at, f in events.values())
    cuts = statistics.quantiles(lags, n=100, method="inclusive") if len(lags) > 1 else lags * 99
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {
        "events": len(events), "missing": len(ids - events.keys()), "events_per_s": round(len(events) / span),
        "lag_p50_ms": round(cuts[49] * 1000, 1), "lag_p99_ms": round(cuts[98] * 1000, 1),
        "lag_max_ms": round(lags[-1] * 1000, 1),
    }  # fmt: skip


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.ca = TestCA(work / "tls")
        self.secret = secrets.token_hex(16)
        self.secret_file = work / "secret"
        self.secret_file.write_text(self.secret)
        self.secret_file.chmod(0o600)
        self.token = Path("/etc/auditgate/admin-token").read_text().strip()
        self.name = f"bench-{secrets.token_hex(3)}"

    def stream_args(self, kind: str, receiver) -> list[str]:
        args = ["audit_stream", "--sink", kind, "--cursor", f"{self.name}-{kind}"]
        if kind == "syslog":
            return [*args, "--syslog-url", receiver.url, "--syslog-ca-file", str(self.ca.ca_file)]
        return [*args, "--webhook-url", receiver.url, "--webhook-ca-file", str(self.ca.ca_file),
                "--webhook-secret-file", str(self.secret_file)]  # fmt: skip

    def load(self, upstream: str, seconds: float) -> None:
        paths = [f"/gw/{upstream}/allowed/x", f"/gw/{upstream}/denied/x"]
        counter = iter(range(10**9))
        closed_loop(self.args.concurrency, seconds, lambda: call(self.token, paths[next(counter) % 2]))

    def event_ids(self, upstream: str, since: int) -> set[int]:
        time.sleep(1)  # the last outcomes leave the spool
        with https_session() as session:
            session.headers["Authorization"] = f"Token {self.token}"
            response = session.get(f"{BASE_URL}/api/audit/events/export/", timeout=300,
                                   params={"format": "ndjson", "upstream": upstream})  # fmt: skip
        return {e["id"] for e in map(orjson.loads, response.iter_lines()) if e["id"] > since}

    def run(self, upstream: str) -> dict[str, dict[str, float]]:
        results = {}
        with (
            Rsyslog(self.work / "rsyslog", self.ca, stamped=True) as rsyslog,
            WebhookReceiver(self.secret.encode(), self.ca) as hook,
        ):
            receivers = {"syslog": rsyslog, "webhook": hook}
            for kind, receiver in receivers.items():  # the cursors start here
                manage(*self.stream_args(kind, receiver), "--once", "--seconds", "60")
            start_id = max(self.event_ids(upstream, 0), default=0)
            self.load(upstream, self.args.backlog_seconds)
            backlog = self.event_ids(upstream, start_id)
            for kind, receiver in receivers.items():
                manage(*self.stream_args(kind, receiver), "--once", "--seconds", "300")
            results["backlog_syslog"] = figures(arrivals_syslog(rsyslog.lines()), backlog)
            results["backlog_webhook"] = figures(arrivals_webhook(hook), backlog)
            live_from = max(backlog)
            seconds = str(self.args.live_seconds + 20)
            streamers = [
                subprocess.Popen([*MANAGE, *self.stream_args(kind, r), "--seconds", seconds])  # noqa: S603 - ours
                for kind, r in receivers.items()
            ]
            time.sleep(3)  # Django starts
            self.load(upstream, self.args.live_seconds)
            live = self.event_ids(upstream, live_from)
            time.sleep(3)
            for streamer in streamers:
                streamer.terminate()
                streamer.wait(30)
            results["live_syslog"] = figures(arrivals_syslog(rsyslog.lines()), live)
            results["live_webhook"] = figures(arrivals_webhook(hook), live)
        for kind in ("syslog", "webhook"):
            manage("audit_stream", "--sink", kind, "--cursor", f"{self.name}-{kind}", "--forget")
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog-seconds", type=float, default=15)
    parser.add_argument("--live-seconds", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    token = Path("/etc/auditgate/admin-token").read_text().strip()
    with tempfile.TemporaryDirectory(prefix="siem-bench-") as work, Upstream() as upstream_server:
        session = https_session()
        session.headers["Authorization"] = f"Token {token}"
        name = f"bench-{secrets.token_hex(3)}"
        made = session.post(f"{BASE_URL}/api/upstreams/", json={"name": name, "base_url": upstream_server.url,
                                                                 "internal": True})  # fmt: skip
        made.raise_for_status()
        rule = {"upstream": name, "user": "admin", "methods": ["GET"], "path_pattern": "/allowed"}
        session.post(f"{BASE_URL}/api/rules/", json=rule).raise_for_status()
        time.sleep(1.1)
        try:
            results = Bench(args, Path(work)).run(name)
        finally:
            session.delete(made.json()["url"])
    print(json.dumps({"concurrency": args.concurrency, **results}, indent=2))


if __name__ == "__main__":
    main()
