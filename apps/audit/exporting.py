"""Streaming exports of the audit trail: CSV and NDJSON, in constant memory.

mysqlclient reads whole result sets into memory, so rows are fetched in keyset pages
(``id > last``) of ``BATCH`` rows, never with one big query.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet

from apps.audit.models import AuditEvent

BATCH = 2000
EXPORT_FIELDS = tuple(f.attname for f in AuditEvent._meta.concrete_fields)
# A spreadsheet would run a cell that starts like a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _tuples(queryset: QuerySet[AuditEvent]) -> Iterator[tuple[Any, ...]]:
    """Keyset pages of raw value tuples in EXPORT_FIELDS order (no model or dict per row)."""
    last = 0
    while True:
        page = list(queryset.filter(id__gt=last).order_by("id").values_list(*EXPORT_FIELDS)[:BATCH])
        yield from page
        if len(page) < BATCH:
            return
        last = page[-1][0]


def rows(queryset: QuerySet[AuditEvent]) -> Iterator[dict[str, Any]]:
    for values in _tuples(queryset):
        yield dict(zip(EXPORT_FIELDS, values, strict=True))


def safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    if isinstance(value, list | dict):
        return json.dumps(value, cls=DjangoJSONEncoder)
    return value


def csv_lines(queryset: QuerySet[AuditEvent]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    for values in _tuples(queryset):
        writer.writerow([safe_cell(value) for value in values])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def ndjson_lines(queryset: QuerySet[AuditEvent]) -> Iterator[str]:
    encode = json.JSONEncoder(separators=(",", ":"), default=_plain).encode
    for values in _tuples(queryset):
        yield encode(dict(zip(EXPORT_FIELDS, values, strict=True))) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return DjangoJSONEncoder().default(value)
