"""Streaming exports of the audit trail: CSV and NDJSON, in constant memory.

mysqlclient reads whole result sets into memory, so rows are fetched in keyset pages
(``id > last``) of ``BATCH`` rows, never with one big query.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet

from apps.audit.models import AuditEvent

BATCH = 2000
EXPORT_FIELDS = tuple(f.attname for f in AuditEvent._meta.concrete_fields)
# A spreadsheet would run a cell that starts like a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def rows(queryset: QuerySet[AuditEvent]) -> Iterator[dict[str, Any]]:
    last = 0
    while True:
        page = list(queryset.filter(id__gt=last).order_by("id").values(*EXPORT_FIELDS)[:BATCH])
        yield from page
        if len(page) < BATCH:
            return
        last = page[-1]["id"]


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
    for row in rows(queryset):
        writer.writerow([safe_cell(row[name]) for name in EXPORT_FIELDS])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def ndjson_lines(queryset: QuerySet[AuditEvent]) -> Iterator[str]:
    for row in rows(queryset):
        yield json.dumps(row, cls=DjangoJSONEncoder, separators=(",", ":")) + "\n"
