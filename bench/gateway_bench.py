#!/usr/bin/env python3
"""Side-by-side benchmark of the gateway path (``make bench``; run as root, loopback only).

Seven scenarios, one machine, one run, interleaved (every scenario once per round, for each
concurrency, then the next round), ``wrk`` as the client, then the chain and slow scenarios:

1. the upstream alone (nginx returning a small body);
2. nginx ``proxy_pass`` to it, with upstream keep-alive: the best-in-class proxy;
3. a bare Django view forwarding with a pooled ``requests`` session: the framework floor;
4. django-revproxy, tuned (pooled, timeouts, no retries): what a Django user reaches for;
5. auditgate's gateway, full path (token, policy, two-phase audit, streaming);
6. the same auditgate under gunicorn (gthread, same processes x threads) behind nginx with
   upstream keep-alive, and bare gunicorn;
7. an API read: the first page of ``/api/audit/events/`` with a filter;

- chain: client -> proxy -> upstream A -> the same proxy (https) -> B, through auditgate,
  django-revproxy and nginx, at 16, 64 and 4x the gateway's threads;
- slow: an upstream that answers after 3 s, 512 connections at once, through the same three,
  with the memory of the processes holding them (``chain_slow.py``).

Scenarios 3-5 and 7 run in a private Apache (plain http on 127.0.0.1) whose mod_wsgi daemon
groups, timeouts and keep-alive settings are copied from ``apache/vhost.conf`` at run time,
with the bench site (``bench/benchsite``: auditgate plus the comparison views) on the bench
database ``bench_auditgate``.  The deployed site and its database are not touched.  With
``--remote-db`` that database is on a MariaDB of the bench's own in a network namespace, a
delayed veth pair away (``remote_db.py``): a database on another host.

Prints one table and writes ``bench/results/gateway-<time>.json`` and ``.png``, and
rewrites ``docs/benchmarks.md``.  Everything it starts, it stops (by PID or its own
control command).

This file is the entry point: the command line and the order of things.  What runs is in
``scenarios.py`` (with the run's :class:`Config`), the set-up and servers in ``servers.py``
(their configs and data in ``fixtures/``, the chain's and slow upstreams in ``upstreams.py``), the
timed runs in ``runner.py`` and ``chain_slow.py``, ``--profile`` in
``profiling.py``, and the tables, chart and docs in ``report.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import remote_db
import servers
from chain_slow import chain_concurrencies, measure_chain, measure_slow
from profiling import profile
from report import chain_markdown, chart, machine, markdown, profile_markdown, slow_markdown, write_docs
from runner import measure, medians, ratios, serve
from scenarios import KINDS, ROOT, VENV, Config, select


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--only", nargs="+", help="scenario keys to run (default: all)")
    parser.add_argument(
        "--scenarios",
        default=",".join(KINDS),
        help="kinds of scenario to run, comma-separated: base (1-7), chain, slow (default: all three)",
    )
    parser.add_argument("--chain-seconds", type=int, default=10)
    parser.add_argument("--chain-concurrency", type=int, nargs="+", help="default: 16, 64, 4x the gateway's threads")
    parser.add_argument("--slow-seconds", type=int, default=20)
    parser.add_argument("--slow-connections", type=int, default=512)
    parser.add_argument(
        "--hop-groups",
        type=int,
        default=0,
        metavar="N",
        help="declare gateway groups auditgate-gw1..N (copies of auditgate-gw) routed by hop level, "
        "when apache/vhost.conf declares none",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        help="start every server, print the URLs and a token, and wait (for profiling by hand)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile: CPU by process, py-spy on the gateway daemons, the gateway's CPU in-process",
    )
    parser.add_argument(
        "--define",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a Define of apache/vhost.conf for this run, e.g. AUDITGATE_GW_THREADS=4",
    )
    parser.add_argument("--no-access-log", action="store_true", help="run the private Apache without its access log")
    parser.add_argument(
        "--remote-db",
        action="store_true",
        help="put the bench database on a MariaDB of its own in a network namespace, "
        f"{remote_db.DELAY_US / 1000:g} ms away each way (tc netem): a database on another host",
    )
    parser.add_argument("--chart", nargs=2, metavar=("JSON", "PNG"), help=argparse.SUPPRESS)
    return parser.parse_args()


def config_from(args: argparse.Namespace) -> Config:
    kinds = tuple(kind.strip() for kind in args.scenarios.split(",") if kind.strip())
    if set(kinds) - set(KINDS):
        sys.exit(f"--scenarios: one or more of {', '.join(KINDS)}")
    levers = args.define or args.no_access_log or args.hop_groups or args.remote_db  # the docs keep the plain run
    return Config(
        seconds=args.seconds,
        rounds=args.rounds,
        concurrencies=tuple(args.concurrency),
        scenarios=select(args.only, kinds),
        chain_seconds=args.chain_seconds,
        chain_concurrencies=tuple(args.chain_concurrency) if args.chain_concurrency else None,
        slow_seconds=args.slow_seconds,
        slow_connections=args.slow_connections,
        defines=dict(define.split("=", 1) for define in args.define),
        access_log=not args.no_access_log,
        hop_groups=args.hop_groups,
        remote_db=args.remote_db,
        partial=bool(args.only or levers or set(kinds) != set(KINDS)),
    )


def save(result: dict, *, partial: bool) -> None:
    """bench/results/gateway-<time>.json and .png; after a full run, docs/benchmarks.md and its chart."""
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    stem = results / f"gateway-{result['when'].replace(':', '')}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    if result["table"]:
        servers.run(VENV / "bin" / "python", __file__, "--chart", stem.with_suffix(".json"), stem.with_suffix(".png"))
    if not partial:
        shutil.copy(stem.with_suffix(".png"), ROOT / "docs" / "benchmarks.png")
        write_docs(result)


def main() -> None:
    args = parse_args()
    if args.chart:
        chart(json.loads(Path(args.chart[0]).read_text()), Path(args.chart[1]))
        return
    if os.geteuid() != 0:
        sys.exit("Run as root (it installs packages and starts servers as the daemon account).")
    config = config_from(args)
    servers.prepare_run_dir()
    servers.install_packages()
    servers.copy_code()
    servers.build_venv()
    with ExitStack() as stack:
        # First and so stopped last: the env file and the migrations need the database up.
        remote = stack.enter_context(remote_db.running()) if config.remote_db else None
        env = servers.django_env(servers.write_env(db_host=remote.host if remote else None))
        token, chain_token = servers.prepare_database(env)
        servers.make_certificate()
        gateway = servers.gateway_shape(config)
        capacity = gateway["threads"]
        stack.enter_context(servers.nginx())
        stack.enter_context(servers.upstreams(chain_token))
        stack.enter_context(servers.apache(env, config))
        stack.enter_context(servers.gunicorn(env, config))
        if args.serve:
            serve(config, token)
            return
        # MariaDB's counters come from the server that holds the bench database.
        mysql = ["mysql", f"--socket={remote_db.SOCKET}"] if remote else ["mysql"]
        if args.profile:
            print(profile_markdown(profile(token, config.seconds, env, mysql)))
            return
        runs = measure(config, token)
        found = None if config.partial else profile(token, config.seconds, env, mysql)
        # After the rounds and the profile: a chain that starves leaves a queue behind it.
        chain = measure_chain(config, token, capacity) if config.of_kind("chain") else None
        slow = measure_slow(config, token) if config.of_kind("slow") else None
    table = medians(runs)
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), "seconds": config.seconds,
              "rounds": config.rounds, "defines": dict(config.defines), "access_log": config.access_log,
              "concurrencies": list(config.concurrencies), "table": table,
              "ratios": ratios(table, config.concurrencies), "profile": found, "runs": runs,
              "gateway": gateway, "chain_concurrencies": list(chain_concurrencies(config, capacity)),
              "chain": chain, "slow": slow}  # fmt: skip
    if remote:
        result["database"] = remote.description
    if table:
        print(markdown(result))
        print(json.dumps(result["ratios"], indent=2))
    if found:
        print(profile_markdown(found))
    if chain:
        print(chain_markdown(result))
    if slow:
        print(slow_markdown(result))
    save(result, partial=config.partial)


if __name__ == "__main__":
    main()
