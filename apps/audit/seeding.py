"""Realistic synthetic audit events, for benchmarks and demos (``manage.py audit_seed``).

MariaDB generates the rows itself (``INSERT ... SELECT`` over its ``seq_1_to_N`` sequence
table): building them in Python ran at about 6 k rows/s, far too slow for the 10 M-row
benchmark.  Every value is a pure function of the row number ``n`` (``CRC32`` of ``n`` salted
per column), so a run is reproducible.  Events are spread evenly over the last ``span_days``
and inserted in time order, as a live gateway writes them, with request ids that start with
the time like mod_unique_id's and 2,048 client addresses: the indexes grow at their right
edge (or at one of a few thousand right edges), as in production.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta

from django.db import connection
from django.utils import timezone

from apps.audit.models import AuditEvent

# Uniform hashes of the row number, one per column that needs randomness (0 <= h < 2**32).
_H = {name: f"CRC32(CONCAT('{name}:', n))" for name in ("deny", "status", "duration", "angle", "who", "what")}
# A standard normal variate (Box-Muller) for log-normal durations.
_NORMAL = f"SQRT(-2 * LN(({_H['duration']} + 1) / 4294967297)) * COS(2 * PI() * {_H['angle']} / 4294967296)"
_DURATION = f"EXP(2.5 + 0.8 * {_NORMAL})"  # milliseconds, log-normal
# When the outcome was written: the start plus the duration.
_DONE = f"@start + INTERVAL FLOOR(n * @step + 1000 * {_DURATION}) MICROSECOND"
_DENIED = f"({_H['deny']} % 100 < 8)"
_PCT = f"({_H['status']} % 100)"
_STATUS = f"""IF({_DENIED}, ELT(1 + {_H["status"]} % 3, 403, 401, 404),
    CASE WHEN {_PCT} < 70 THEN 200 WHEN {_PCT} < 75 THEN 201 WHEN {_PCT} < 80 THEN 204
         WHEN {_PCT} < 85 THEN 302 WHEN {_PCT} < 93 THEN 404 WHEN {_PCT} < 96 THEN 500
         WHEN {_PCT} < 98 THEN 502 ELSE 504 END)"""
_UPSTREAMS = ("crm", "billing", "hr", "wiki", "ci", "grafana", "vault", "jira")
_PATHS = ("/api/v1/items", "/api/v1/users", "/reports/2026", "/admin/settings", "/health", "/api/v2/orders")
_REASONS = ("no_matching_rule", "denied_by_rule", "outside_time_window", "source_ip_not_allowed", "token_scope")


def _pick(hash_sql: str, values: tuple[str, ...], shift: int = 0) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"ELT(1 + ({hash_sql} >> {shift}) % {len(values)}, {quoted})"


# Column -> SQL expression of the row number ``n``, the start time ``@start`` and the
# microseconds between two events ``@step``.  Columns not listed keep their defaults.
_COLUMNS = {
    "schema_version": "1",
    "event_type": f"IF({_DENIED}, 'gateway.denied', 'gateway.request')",
    "occurred_at": "@start + INTERVAL FLOOR(n * @step) MICROSECOND",
    "duration_ms": f"ROUND({_DURATION}, 3)",
    "recorded_at": _DONE,
    "completed_at": _DONE,
    # Like Apache's mod_unique_id (the gateway's request ids): the time first, then random bits.
    "request_id": "CONCAT(LPAD(HEX(UNIX_TIMESTAMP(@start) + FLOOR(n * @step / 1000000)), 8, '0'), LEFT(MD5(n), 19))",
    "actor_username": f"CONCAT('user', LPAD({_H['who']} % 200, 3, '0'))",
    "actor_groups": "'[]'",
    "auth_method": "'token'",
    "token_key_id": f"CONCAT('k', LPAD(({_H['who']} >> 8) % 400, 5, '0'))",
    # 2,048 client addresses in 32 /24 networks: an internal gateway's callers.
    "source_ip": f"CONCAT('10.', {_H['who']} % 4, '.', ({_H['who']} >> 10) % 8, '.', 1 + ({_H['who']} >> 18) % 64)",
    "peer_ip": "'127.0.0.1'",
    "forwarded_chain": "''",
    "host": "'gate.example.org'",
    "user_agent": _pick(_H["what"], ("curl/8.5.0", "python-requests/2.32", "Mozilla/5.0"), 20),
    "upstream_name": "CONCAT('svc-', " + _pick(_H["what"], _UPSTREAMS) + ")",
    "method": f"ELT(1 + (({_H['what']} >> 4) % 100 >= 80) + (({_H['what']} >> 4) % 100 >= 92)"
    f" + (({_H['what']} >> 4) % 100 >= 97), 'GET', 'POST', 'PUT', 'DELETE')",
    "path": f"CONCAT({_pick(_H['what'], _PATHS, 12)}, '/', ({_H['what']} >> 16) % 10000)",
    "query": "''",
    "decision": f"IF({_DENIED}, 'deny', 'allow')",
    "reason": f"IF({_DENIED}, {_pick(_H['deny'], _REASONS, 8)}, 'allowed')",
    "status": _STATUS,
    "upstream_status": f"IF({_DENIED}, NULL, {_STATUS})",
    "error": f"CASE WHEN {_DENIED} THEN '' WHEN {_PCT} >= 98 THEN 'upstream_read_timeout'"
    f" WHEN {_PCT} >= 96 THEN 'upstream_refused' ELSE '' END",
    "request_bytes": f"({_H['what']} >> 3) % 2000",
    "request_sha256": "''",
    "response_bytes": f"IF({_DENIED}, 0, 100 + ({_H['status']} >> 7) % 49900)",
    "response_sha256": "''",
    "ttfb_ms": f"IF({_DENIED}, NULL, ROUND(0.8 * {_DURATION}, 3))",
    "overhead_ms": "0.4",
    "client_aborted": "0",
    "worker": "'seed/0'",
    "injected_credential": "''",
    "object_type": "''",
    "object_id": "''",
    "object_repr": "''",
    "trace_id": "''",
}
_BATCH = 50_000


def _insert_sql() -> str:
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(column) for column in _COLUMNS)
    values = ", ".join(_COLUMNS.values())
    # The batch's row numbers: ``n`` = offset + 1 .. offset + size (%s: offset, size).
    return f"INSERT INTO {table} ({columns}) SELECT {values} FROM (SELECT seq + %s AS n FROM seq_1_to_{_BATCH} WHERE seq <= %s) AS rows_"  # noqa: E501, S608 - our own SQL


def seed(rows: int, *, span_days: int = 30, progress: Callable[[int], None] | None = None) -> int:
    """Insert ``rows`` completed gateway events spread evenly over the last ``span_days``."""
    end = timezone.now().astimezone(UTC).replace(tzinfo=None)  # stored naive, in UTC
    start = end - timedelta(days=span_days)
    step = span_days * 86_400 * 1_000_000 / max(rows, 1)
    sql = _insert_sql().replace("%", "%%").replace("%%s", "%s")  # only the two parameters are placeholders
    written = 0
    with connection.cursor() as cursor:
        cursor.execute("SET @start = %s, @step = %s", [start, step])
        while written < rows:
            size = min(_BATCH, rows - written)
            cursor.execute(sql, [written, size])
            written += size
            if progress:
                progress(size)
    return written
