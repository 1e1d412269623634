"""Aggregates for dashboards: counts per time bucket and latency percentiles."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Trunc
from django.utils import timezone

from apps.audit.models import AuditEvent

BUCKETS = ("minute", "hour", "day")
PERCENTILES = (0.5, 0.95, 0.99)


def counts(queryset: QuerySet[AuditEvent], bucket: str) -> list[dict[str, Any]]:
    rows = (
        queryset.annotate(bucket=Trunc("occurred_at", bucket))
        .values("bucket", "upstream_name", "decision", "status")
        .annotate(count=Count("id"))
        .order_by("bucket", "upstream_name", "decision", "status")
    )
    return [{**row, "bucket": row["bucket"].isoformat()} for row in rows]


def top_callers(queryset: QuerySet[AuditEvent], limit: int = 10) -> list[dict[str, Any]]:
    """The callers with the most gateway attempts, with their denials and server errors."""
    rows = (
        queryset.values("actor_username")
        .annotate(requests=Count("id"), denied=Count("id", filter=Q(decision="deny")),
                  errors=Count("id", filter=Q(status__gte=500)))
        .order_by("-requests", "actor_username")[:limit]
    )  # fmt: skip
    return list(rows)


DENIAL_FIELDS = ("id", "occurred_at", "actor_username", "upstream_name", "method", "path", "reason", "status",
                 "request_id")  # fmt: skip


def recent_denials(queryset: QuerySet[AuditEvent], limit: int = 20) -> list[dict[str, Any]]:
    """The newest denials, read backwards along the (decision, occurred_at) index."""
    rows = queryset.filter(decision="deny").order_by("-occurred_at", "-id").values(*DENIAL_FIELDS)[:limit]
    return [{**row, "occurred_at": row["occurred_at"].isoformat()} for row in rows]


def latency_percentiles(queryset: QuerySet[AuditEvent]) -> dict[str, float | None]:
    """p50/p95/p99 of ``duration_ms``, computed by MariaDB (PERCENTILE_CONT), not in Python."""
    names = [f"p{int(p * 100)}" for p in PERCENTILES]
    try:
        sql, params = queryset.filter(duration_ms__gt=0).values("duration_ms").query.sql_with_params()
    except EmptyResultSet:  # no row can match (e.g. status_max=-1 on an unsigned column): the ORM says so here
        return dict.fromkeys(names)
    columns = ", ".join(f"PERCENTILE_CONT({p}) WITHIN GROUP (ORDER BY t.duration_ms) OVER ()" for p in PERCENTILES)
    with connections[queryset.db].cursor() as cursor:  # the replica's, when the view reads from it
        cursor.execute(f"SELECT {columns} FROM ({sql}) t LIMIT 1", params)  # noqa: S608 - built from our own query
        row = cursor.fetchone()
    return dict(zip(names, [round(v, 3) if v is not None else None for v in (row or [None] * 3)], strict=True))


def window(after: datetime | None, before: datetime | None) -> tuple[datetime, datetime]:
    """The time window of a stats request: the last 24 hours by default."""
    before = before or timezone.now()
    return after or before - timedelta(hours=24), before
