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
from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

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


def _json_expression() -> str:
    """``JSON_OBJECT(...)`` of every column: MariaDB builds each NDJSON line, Python only joins them."""
    parts = []
    for field in AuditEvent._meta.concrete_fields:
        column = connection.ops.quote_name(field.column)
        kind = field.get_internal_type()
        if kind == "DateTimeField":
            value = f"DATE_FORMAT({column}, '%%Y-%%m-%%dT%%H:%%i:%%s.%%fZ')"
        elif kind == "JSONField":
            value = f"JSON_EXTRACT({column}, '$')"
        elif kind == "BooleanField":
            value = f"JSON_EXTRACT(IF({column}, 'true', 'false'), '$')"
        else:
            value = column
        parts.append(f"'{field.attname}', {value}")
    return f"JSON_OBJECT({', '.join(parts)})"


def ndjson_lines(queryset: QuerySet[AuditEvent]) -> Iterator[str]:
    line = RawSQL(_json_expression(), ())  # noqa: S611 - built from our own column names
    last = 0
    while True:
        page = list(queryset.filter(id__gt=last).order_by("id").annotate(line=line).values_list("id", "line")[:BATCH])
        yield "".join(f"{text}\n" for _, text in page)
        if len(page) < BATCH:
            return
        last = page[-1][0]
