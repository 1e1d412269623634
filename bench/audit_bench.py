#!/usr/bin/env python3
"""Audit trail benchmark: query, export, verify and insert costs at N rows.

Runs as the test database account on its own database (``bench_auditgate``, recreated here),
never the deployed one, and never the test suite's.  Prints the figures and writes
bench/results/audit-<rows>-<time>.json.

    .venv/bin/python bench/audit_bench.py --rows 1000000
    .venv/bin/python bench/audit_bench.py --rows 10000000 --seed-only   # load once (minutes)...
    .venv/bin/python bench/audit_bench.py --rows 10000000 --skip-seed   # ...then measure, on a quiet machine
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "site")]
os.environ.setdefault("AUDITGATE_ENV_FILE", "/etc/auditgate/auditgate.env:/etc/auditgate/test.env")
os.environ["AUDITGATE_DB_NAME"] = DATABASE = "bench_auditgate"
os.environ["AUDITGATE_AUDIT_CHECKPOINT_FILE"] = ""  # never the deployment's checkpoint file
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "auditgate.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from tqdm import tqdm  # noqa: E402

from apps.audit import exporting, sealing  # noqa: E402
from apps.audit.api.serializers import VERIFY_PAGE_DEFAULT, VERIFY_PAGE_MAX  # noqa: E402
from apps.audit.models import AuditEvent, AuditEventHash, AuditSeal, _insert_statement  # noqa: E402
from apps.audit.seeding import seed  # noqa: E402
from apps.gateway.tokens import create_token  # noqa: E402

FILTERS = {
    "newest page": {},
    "one actor": {"actor": "user042"},
    "one upstream, denied": {"upstream": "svc-hr", "decision": "deny"},
    "server errors": {"status_min": 500},
    "client /24": {"client_ip": "10.1.7.0/24"},
    "last hour": {"occurred_after": None},
}


def fresh_database() -> None:
    with connection._nodb_cursor() as cursor:  # as Django's test runner does: no database selected
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cursor.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    connection.close()
    call_command("migrate", verbosity=0)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1]


def first_pages(client: Client, runs: int) -> dict[str, dict[str, float]]:
    results = {}
    for name, query in FILTERS.items():
        query = {k: v or (timezone.now() - timezone.timedelta(hours=1)).isoformat() for k, v in query.items()}
        timings = []
        for _ in range(runs):
            start = time.perf_counter()
            response = client.get("/api/audit/events/", query)
            timings.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.content[:300]
        results[name] = {"p50_ms": round(statistics.median(timings), 2), "p95_ms": round(percentile(timings, 0.95), 2)}
    return results


def export_rate() -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, rows = time.perf_counter(), 0
    for chunk in exporting.ndjson_lines(AuditEvent.objects.all()):
        rows += chunk.count(b"\n" if isinstance(chunk, bytes) else "\n")
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rows_per_s": round(rows / elapsed), "peak_rss_mb": round(peak / 1024, 1),
            "rss_growth_mb": round((peak - before) / 1024, 1)}  # fmt: skip


def seal_and_verify() -> dict[str, float]:
    """Seal the whole table from scratch (earlier runs' seals are dropped), then verify it."""
    with connection.cursor() as cursor:
        for model in (AuditEventHash, AuditSeal):
            cursor.execute(f"TRUNCATE TABLE {model._meta.db_table}")
    start = time.perf_counter()
    while sealing.seal(now=timezone.now() + timezone.timedelta(hours=1), limit=100_000):
        pass
    sealed = time.perf_counter() - start
    start = time.perf_counter()
    report = sealing.verify(keys=settings.AUDIT_SEAL_KEYS)
    verified = time.perf_counter() - start
    assert report.ok, report.problems[:3]
    figures = {"seal_rows_per_s": round(report.events_checked / sealed),
               "verify_rows_per_s": round(report.events_checked / verified)}  # fmt: skip
    # What one GET /api/audit/verify page costs (it checks every checkpoint, re-hashes a page).
    for size in (VERIFY_PAGE_DEFAULT, VERIFY_PAGE_MAX):
        start = time.perf_counter()
        page = sealing.verify(max_events=size)
        figures[f"verify_page_{size}_ms"] = round((time.perf_counter() - start) * 1000)
        assert page.ok and page.events_checked >= min(size, report.events_checked)
    return figures


def _sample_event(number: int) -> dict[str, object]:
    """A gateway event like those the seeder writes (time-led request id, one of 2,048 clients)."""
    now = timezone.now()
    return dict(
        event_type="gateway.request", occurred_at=now, recorded_at=now, completed_at=now, duration_ms=12.5,
        request_id=f"{int(time.time()):08X}{os.urandom(10).hex()[:19]}", actor_username=f"user{number % 200:03d}",
        auth_method="token", token_key_id=f"k{number % 400:05d}",
        source_ip=f"10.{number % 4}.{number % 8}.{number % 64 + 1}",
        peer_ip="127.0.0.1", user_agent="curl/8.5.0", upstream_name="svc-crm", method="GET",
        path=f"/api/v1/items/{number}", decision="allow", reason="allowed", status=200, upstream_status=200,
        response_bytes=512, ttfb_ms=10.0,
    )  # fmt: skip


def _timed_inserts(table: str, samples: int) -> float:
    """Milliseconds per committed insert (autocommit: one durable write each), the gateway's statement."""
    sql, fields = _insert_statement()
    sql = sql.replace(connection.ops.quote_name(AuditEvent._meta.db_table), connection.ops.quote_name(table), 1)
    rows = [[f.get_db_prep_save(_sample_event(n).get(f.attname, f.get_default()), connection) for f in fields]
            for n in range(samples)]  # fmt: skip
    with connection.cursor() as cursor:
        start = time.perf_counter()
        for params in rows:
            cursor.execute(sql, params)
        return (time.perf_counter() - start) / samples * 1000


def insert_costs(rounds: int = 5, samples: int = 300) -> dict[str, float]:
    """One insert into an empty twin of the audit table (same columns and indexes) against one
    into the full table, alternating, so that both see the same machine; medians of the rounds."""
    table, twin = AuditEvent._meta.db_table, "bench_empty_twin"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {twin}")
        cursor.execute(f"CREATE TABLE {twin} LIKE {table}")
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_reads'")
        reads_before = int(cursor.fetchone()[1])
    empty, full = [], []
    for _ in range(rounds):
        empty.append(_timed_inserts(twin, samples))
        full.append(_timed_inserts(table, samples))
    with connection.cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_reads'")
        reads = int(cursor.fetchone()[1]) - reads_before
        cursor.execute(f"DROP TABLE {twin}")
    return {"empty_ms": round(statistics.median(empty), 3), "full_ms": round(statistics.median(full), 3),
            "disk_reads_per_insert": round(reads / (rounds * samples * 2), 3)}  # fmt: skip


STATE = ROOT / "bench" / "results" / "audit-seeded.json"


def load(rows: int) -> dict[str, object]:
    """A fresh database with ``rows`` events; the insert cost measured before they went in."""
    fresh_database()
    result: dict[str, object] = {"rows": rows}
    start = time.perf_counter()
    with tqdm(total=rows, unit="event", file=sys.stderr) as bar:
        seed(rows, progress=bar.update)
    result["seed_rows_per_s"] = round(rows / (time.perf_counter() - start))
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(result) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    phase = parser.add_mutually_exclusive_group()
    phase.add_argument("--seed-only", action="store_true", help="load the rows, measure nothing else")
    phase.add_argument("--skip-seed", action="store_true", help="measure the rows an earlier --seed-only loaded")
    args = parser.parse_args()
    if args.skip_seed:
        result = json.loads(STATE.read_text())
        if result["rows"] != args.rows:
            parser.error(f"{STATE.name} holds {result['rows']} rows, not {args.rows}")
    else:
        result = load(args.rows)
    print(json.dumps(result), flush=True)
    if args.seed_only:
        return
    result["insert"] = insert_costs()
    print(json.dumps(result["insert"]), flush=True)
    auditor = User.objects.create_user(f"bench-auditor-{time.time_ns()}")
    auditor.groups.add(Group.objects.get_or_create(name="auditor")[0])
    _, token = create_token(user=auditor, label="bench", expires_at=timezone.now() + timezone.timedelta(days=1),
                            management_api=True)  # fmt: skip
    client = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_HOST="localhost")
    result["first_page"] = first_pages(client, args.runs)
    print(json.dumps(result["first_page"]), flush=True)
    result["export"] = export_rate()
    print(json.dumps(result["export"]), flush=True)
    result["chain"] = seal_and_verify()
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / f"audit-{args.rows}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
