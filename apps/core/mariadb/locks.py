"""MariaDB named locks (``GET_LOCK``): one holder at a time across processes and web hosts.

A named lock belongs to the database connection that took it and dies with it, so a holder
that crashed, or whose host died, frees it as soon as MariaDB notices the connection is gone,
and cron's next run on any host takes over.  The sealer, the SIEM streamers (one per sink) and
the alerts evaluator each run under one.

Lock names are server-wide, not per database: each is qualified by the connection's database
name, so a test database on the deployment's server (or a second deployment) never takes turns
with the deployment, while every web host of one deployment (one database name) still excludes
the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper

# MariaDB refuses a longer lock name.
MAX_NAME_LENGTH = 64
_DIGEST_LENGTH = 16


def lock_name(purpose: str, database: str) -> str:
    """``auditgate.<purpose>.<database>``; past 64 characters, its head and a digest of the
    whole name, so that two long names that share their first 64 characters stay apart."""
    name = f"auditgate.{purpose}.{database}"
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_DIGEST_LENGTH]
    return f"{name[: MAX_NAME_LENGTH - _DIGEST_LENGTH - 1]}#{digest}"


@dataclass(frozen=True)
class NamedLock:
    """The lock for ``purpose`` (e.g. "sealer", "siem.<cursor>"), taken on ``connection``
    (None: Django's default connection, the primary)."""

    purpose: str
    connection: BaseDatabaseWrapper | None = None

    @property
    def _connection(self) -> BaseDatabaseWrapper:
        return default_connection if self.connection is None else self.connection

    @property
    def name(self) -> str:
        return lock_name(self.purpose, self._connection.settings_dict["NAME"])

    def _ask(self, sql: str, *params: float) -> object:
        with self._connection.cursor() as cursor:
            cursor.execute(sql, [self.name, *params])
            return cursor.fetchone()[0]

    def take(self, wait: float) -> bool:
        """Whether this connection got the lock within ``wait`` seconds (0: without waiting)."""
        return self._ask("SELECT GET_LOCK(%s, %s)", wait) == 1

    def release(self) -> None:
        self._ask("SELECT RELEASE_LOCK(%s)")

    def held(self) -> bool:
        """Whether this connection still holds it: a connection that was replaced (a lost
        session, a reconnect) lost its locks, and another holder may be running by now."""
        return self._ask("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()") == 1

    @contextmanager
    def holding(self, wait: float) -> Iterator[bool]:
        """Yields whether the lock was taken within ``wait`` seconds; releases it afterwards if so."""
        taken = self.take(wait)
        try:
            yield taken
        finally:
            if taken:
                self.release()
