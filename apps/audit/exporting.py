"""Streaming exports of the audit trail: CSV and NDJSON, in constant memory.

mysqlclient reads whole result sets into memory, so rows are fetched in keyset pages
(``id > last``) of ``BATCH`` rows, never with one big query.  Both exports work on raw
rows, for speed (docs/audit-benchmark.md).  The NDJSON export is also retention's archive
of purged events (``apps.audit.retention``): a line must keep every value the hash chain
sealed, datetimes to the microsecond.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson
from django.db import connection
from django.db.models import CharField, F, Func, QuerySet, Value

from apps.audit.models import AuditEvent

BATCH = 2000
EXPORT_FIELDS = tuple(f.attname for f in AuditEvent._meta.concrete_fields)
# A spreadsheet would run a cell that starts like a formula (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# --- fast streaming exports --------------------------------------------------------------
# Raw rows, never models or Django's converters: MariaDB formats the datetimes (parsing
# them into Python objects and formatting them again was half of the export's time), JSON
# columns stay the JSON text they are stored as.

_FIELDS = AuditEvent._meta.concrete_fields
_JSON_COLUMNS = [i for i, f in enumerate(_FIELDS) if f.get_internal_type() == "JSONField"]
_BOOLEAN_COLUMNS = [i for i, f in enumerate(_FIELDS) if f.get_internal_type() == "BooleanField"]
_TEXT_COLUMNS = [i for i, f in enumerate(_FIELDS) if f.get_internal_type() in ("CharField", "GenericIPAddressField")]


def _raw_column(field: Any) -> Any:
    if field.get_internal_type() == "DateTimeField":
        return Func(F(field.attname), Value("%Y-%m-%dT%H:%i:%s.%fZ"), function="DATE_FORMAT", output_field=CharField())
    return F(field.attname)


_RAW_COLUMNS = [_raw_column(f) for f in _FIELDS]


def _raw_pages(queryset: QuerySet[AuditEvent]) -> Iterator[list[tuple[Any, ...]]]:
    """Keyset pages of raw rows (EXPORT_FIELDS order, datetimes as ISO-8601 UTC strings)."""
    last = 0
    with connection.cursor() as cursor:
        while True:
            page = queryset.filter(id__gt=last).order_by("id").values_list(*_RAW_COLUMNS)[:BATCH]
            cursor.execute(*page.query.sql_with_params())
            rows = cursor.fetchall()
            yield rows
            if len(rows) < BATCH:
                return
            last = rows[-1][0]


def csv_lines(queryset: QuerySet[AuditEvent]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    for page in _raw_pages(queryset):
        for raw in page:
            row = list(raw)
            for i in _TEXT_COLUMNS:
                if row[i] and row[i].startswith(_FORMULA_START):
                    row[i] = "'" + row[i]
            for i in _BOOLEAN_COLUMNS:
                row[i] = bool(row[i])
            writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def ndjson_lines(queryset: QuerySet[AuditEvent]) -> Iterator[bytes]:
    """One JSON object per line (orjson: several times faster than json, and than MariaDB's
    own JSON_OBJECT, which ran at about 60 k rows/s)."""
    names = EXPORT_FIELDS
    for page in _raw_pages(queryset):
        lines = []
        for raw in page:
            row = list(raw)
            for i in _JSON_COLUMNS:
                if row[i] is not None:
                    row[i] = orjson.Fragment(row[i])
            for i in _BOOLEAN_COLUMNS:
                row[i] = bool(row[i])
            lines.append(orjson.dumps(dict(zip(names, row, strict=True))))
        if lines:
            yield b"\n".join(lines) + b"\n"
