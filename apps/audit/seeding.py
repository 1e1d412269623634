"""Realistic synthetic audit events, for benchmarks and demos (``manage.py audit_seed``)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from apps.audit.models import AuditEvent

_USERS = [f"user{i:03d}" for i in range(200)]
_UPSTREAMS = [f"svc-{name}" for name in ("crm", "billing", "hr", "wiki", "ci", "grafana", "vault", "jira")]
_PATHS = ["/api/v1/items", "/api/v1/users", "/reports/2026", "/admin/settings", "/health", "/api/v2/orders"]
_REASONS = ["no_matching_rule", "denied_by_rule", "outside_time_window", "source_ip_not_allowed", "token_scope"]


def _event(rng: random.Random, now, span_seconds: int) -> AuditEvent:
    occurred = now - timedelta(seconds=rng.random() * span_seconds)
    denied = rng.random() < 0.08
    status = rng.choice((403, 401, 404)) if denied else rng.choices((200, 201, 204, 302, 404, 500, 502, 504),
                                                                    (70, 5, 5, 5, 8, 3, 2, 2))[0]  # fmt: skip
    duration = round(rng.lognormvariate(2.5, 0.8), 3)
    return AuditEvent(
        event_type="gateway.denied" if denied else "gateway.request",
        occurred_at=occurred,
        recorded_at=occurred + timedelta(milliseconds=duration),
        completed_at=occurred + timedelta(milliseconds=duration),
        duration_ms=duration,
        request_id=f"{rng.getrandbits(96):024x}",
        actor_username=rng.choice(_USERS),
        auth_method="token",
        token_key_id=f"k{rng.randrange(400):05d}",
        source_ip=f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        peer_ip="127.0.0.1",
        user_agent=rng.choice(("curl/8.5.0", "python-requests/2.32", "Mozilla/5.0")),
        upstream_name=rng.choice(_UPSTREAMS),
        method=rng.choices(("GET", "POST", "PUT", "DELETE"), (80, 12, 5, 3))[0],
        path=f"{rng.choice(_PATHS)}/{rng.randrange(10000)}",
        decision="deny" if denied else "allow",
        reason=rng.choice(_REASONS) if denied else "allowed",
        status=status,
        upstream_status=None if denied else status,
        request_bytes=rng.randrange(0, 2000),
        response_bytes=0 if denied else rng.randrange(100, 50_000),
        ttfb_ms=None if denied else round(duration * 0.8, 3),
    )


_FIELDS = [f for f in AuditEvent._meta.concrete_fields if f.attname != "id"]
_INSERT = "INSERT INTO {} ({}) VALUES ({})".format(  # noqa: S608 - our own column names
    AuditEvent._meta.db_table,
    ", ".join(connection.ops.quote_name(f.column) for f in _FIELDS),
    ", ".join(["%s"] * len(_FIELDS)),
)


def seed(rows: int, *, batch: int = 5000, span_days: int = 30, seed: int = 1,
         progress: Callable[[int], None] | None = None) -> int:  # fmt: skip
    """Insert ``rows`` events with multi-row INSERTs (bulk_create's per-object work is the bottleneck)."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible on purpose
    now = timezone.now()
    written = 0
    with connection.cursor() as cursor:
        while written < rows:
            size = min(batch, rows - written)
            events = [_event(rng, now, span_days * 86400) for _ in range(size)]
            cursor.executemany(_INSERT, [[f.get_db_prep_save(f.pre_save(e, True), connection) for f in _FIELDS]
                                         for e in events])  # fmt: skip
            written += size
            if progress:
                progress(size)
    return written
