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
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from django.core.exceptions import EmptyResultSet
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db.models import CharField, F, Func, JSONField, QuerySet, Value

from apps.audit.models import AuditEvent
from apps.core import replica

logger = logging.getLogger(__name__)

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
# The same, with the captured evidence's metadata (apps.audit.evidence: digests, redacted headers)
# left out: only auditors read it; other users export their own events without it.
_RAW_COLUMNS_WITHOUT_EVIDENCE = [
    Value(None, output_field=JSONField()) if f.attname == "evidence" else column
    for f, column in zip(_FIELDS, _RAW_COLUMNS, strict=True)
]


def _raw_pages(queryset: QuerySet[AuditEvent], columns: list[Any]) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Keyset pages of raw rows (EXPORT_FIELDS order, datetimes as ISO-8601 UTC strings), read
    from the queryset's database.  When the replica fails under an export, the export goes on
    from the primary after the last id it sent (the first column), so the body stays whole."""
    after = 0
    while True:
        try:
            for rows in _pipelined_pages(queryset, after, columns):
                if rows:
                    after = rows[-1][0]
                yield rows
            return
        except OperationalError:
            if queryset.db != replica.REPLICA:
                raise
            logger.warning("The replica failed during an export: going on from the primary", exc_info=True)
            replica.mark_down()
            queryset = queryset.using(DEFAULT_DB_ALIAS)


def _pipelined_pages(
    queryset: QuerySet[AuditEvent], after: int, columns: list[Any]
) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Pipelined on the one connection: as soon as a page is read, the query for the next one is
    sent (its first id is known), and MariaDB runs it while the caller encodes this page.  The
    same connection, not a second one, so the export sees what its transaction sees."""
    connection = connections[queryset.db]
    connection.ensure_connection()
    with connection.wrap_database_errors:
        pending = _PageQuery(connection.connection, queryset, columns)
        pending.send(after=after)
        try:
            while True:
                rows = pending.read()
                if len(rows) == BATCH:
                    pending.send(after=rows[-1][0])
                yield rows
                if len(rows) < BATCH:
                    return
        finally:
            pending.discard()  # the caller stopped early: the connection must be usable again


class _PageQuery:
    """One keyset page query in flight on a MySQLdb connection (``send_query`` now, the
    result later), at most one at a time."""

    def __init__(self, db: Any, queryset: QuerySet[AuditEvent], columns: list[Any]):
        self.db, self.queryset, self.in_flight, self.matches_nothing = db, queryset, False, False
        self.columns = columns
        self._binder = db.cursor()  # binds parameters as execute() would; runs nothing

    def send(self, *, after: int) -> None:
        page = self.queryset.filter(id__gt=after).order_by("id").values_list(*self.columns)[:BATCH]
        try:
            sql, params = page.query.sql_with_params()
        except EmptyResultSet:  # no row can match (e.g. status_max=-1 on an unsigned column): nothing to send
            self.matches_nothing = True
            return
        self.db.send_query(self._binder.mogrify(sql, params).encode(self.db.encoding))
        self.in_flight = True

    def read(self) -> Sequence[tuple[Any, ...]]:
        if self.matches_nothing:
            return ()
        self.in_flight = False
        self.db.read_query_result()
        return self.db.store_result().fetch_row(maxrows=0)

    def discard(self) -> None:
        if self.in_flight:
            self.read()


def _columns(evidence: bool) -> list[Any]:
    return _RAW_COLUMNS if evidence else _RAW_COLUMNS_WITHOUT_EVIDENCE


def csv_lines(queryset: QuerySet[AuditEvent], *, evidence: bool = True) -> Iterator[str]:
    """``evidence``: with the captured evidence's metadata (auditors); its column is empty otherwise."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    for page in _raw_pages(queryset, _columns(evidence)):
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


def ndjson_lines(queryset: QuerySet[AuditEvent], *, evidence: bool = True) -> Iterator[bytes]:
    """One JSON object per line (orjson: several times faster than json, and than MariaDB's
    own JSON_OBJECT, which ran at about 60 k rows/s).  ``evidence``: as ``csv_lines``."""
    names = EXPORT_FIELDS
    for page in _raw_pages(queryset, _columns(evidence)):
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
