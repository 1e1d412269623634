"""Group commit of audit inserts in the process: one statement and one commit for the
attempts of every request thread waiting at that moment.

A thread that arrives while no insert is under way becomes the leader: it takes every row
queued so far, writes them with one multi-row ``INSERT ... RETURNING id`` on its own
connection (autocommit: one commit), hands each waiting thread its id and wakes them.  Rows
queued meanwhile go with the next leader.  Every thread still returns only once its own row
is committed, so "the attempt is committed before anything is forwarded" holds as before;
at c=1 a batch is one row and nothing waits.  If the statement fails, every row of the batch
fails with it (each request answers 503, fail-closed), as a lone insert would.

MariaDB returns the rows of a multi-row ``INSERT ... RETURNING`` in the order of the values
(Django's ``bulk_create`` relies on it too), and with ``innodb_autoinc_lock_mode`` 1 their
ids are consecutive: the hash chain, which links events in id order, is unchanged.

Only an insert outside a transaction can join a batch: inside one (an admin change and its
audit event, atomically) the row must be written by that transaction's own connection.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from django.db import connection


class _Row:
    __slots__ = ("error", "id", "params", "sql")

    def __init__(self, sql: str, params: Sequence[Any]):
        self.sql = sql
        self.params = params
        self.id: int | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """Batches single-row inserts into one table from concurrent threads.

    ``prefix``: ``INSERT INTO <table> (<columns>) VALUES ``; each row brings its own values
    list (placeholders and constants) and parameters."""

    def __init__(self, prefix: str):
        self._prefix = prefix
        self._cond = threading.Condition()
        self._queue: list[_Row] = []
        self._writing = False

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        """Insert one row, ``sql`` its ``(...)`` (with the rows of the threads waiting now); its
        id once committed."""
        row = _Row(sql, params)
        with self._cond:
            self._queue.append(row)
            while row.id is None and row.error is None:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True
                batch, self._queue = self._queue, []
                self._cond.release()
                try:
                    self._write(batch)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if row.error is not None:
            raise row.error
        assert row.id is not None
        return row.id

    def _write(self, batch: list[_Row]) -> None:
        try:
            sql = self._prefix + ", ".join([row.sql for row in batch]) + " RETURNING id"
            params = [value for row in batch for value in row.params]
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                ids = [found for (found,) in cursor.fetchall()]
            if len(ids) != len(batch):  # never expected: fail the batch rather than guess
                raise RuntimeError(f"{len(ids)} ids for {len(batch)} audit rows")
        except BaseException as exc:
            for row in batch:
                row.error = exc
            return
        for row, row_id in zip(batch, ids, strict=True):
            row.id = row_id
