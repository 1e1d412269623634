"""Reads of the audit trail from a MariaDB replica, only where a view asks for it.

The database alias ``replica`` exists when ``AUDITGATE_DB_REPLICA_HOST`` is set
(``auditgate.env.replica_database``); ``ReplicaRouter`` is then installed.  It sends a read
to the replica only when all of these hold, and every other read and every write to
``default``:

- the code runs inside ``replica_reads(Model, ...)`` (a context variable, so it holds for
  this thread or task only) and the model read is one the scope names: a user's groups, a
  token or an upstream read while serving an audit page still come from the primary, so a
  revocation is never read ``lag`` seconds late;
- no transaction is open on ``default`` (what a transaction reads must be what it writes on);
- the replica is healthy: ``SHOW SLAVE STATUS`` (the app's account needs ``SLAVE MONITOR``
  on the replica) says both replication threads run and ``Seconds_Behind_Master`` is known
  and at most ``AUDIT_REPLICA_MAX_LAG_SECONDS``.  The probe runs at most every
  ``PROBE_INTERVAL`` seconds per process, never raises, and connects with a 2 s timeout, so
  a dead replica costs one request at most that long every few seconds.

Sealing, verification, reconciling and the gateway never enter a scope, so they never read
from the replica.

When a read on the replica fails (``OperationalError``: the replica went away mid-request),
``reads_from_replica`` marks it down for ``PROBE_INTERVAL`` and runs the view once more on
``default``: the views it wraps read before they write their own audit event, so running them
again repeats no write.  A streamed export cannot be restarted once its first bytes are sent:
it continues on ``default`` from the last id it sent (``apps.audit.exporting``).  A detail
the replica has not received yet (404) is looked up on ``default`` too.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Literal, ParamSpec, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, OperationalError, connections
from django.db.models import Model
from django.http import Http404

logger = logging.getLogger(__name__)

REPLICA = "replica"
# How long a probe's answer stands, per process (seconds).
PROBE_INTERVAL = 5.0

State = Literal["ok", "lagging", "down"]


@dataclass(frozen=True)
class Health:
    state: State
    lag_seconds: int | None

    @property
    def usable(self) -> bool:
        return self.state == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "lag_seconds": self.lag_seconds}


DOWN = Health("down", None)


def configured() -> bool:
    return REPLICA in settings.DATABASES


# --- the probe ---------------------------------------------------------------------------


def judge(status: dict[str, Any] | None, max_lag: int) -> Health:
    """What one row of ``SHOW SLAVE STATUS`` (None: no row, not a replica) says.  "lagging"
    is replicating but further behind than ``max_lag``; a stopped or reconnecting thread, or
    an unknown lag, is "down": the replica no longer follows the primary."""
    if status is None:
        return DOWN
    lag = status.get("Seconds_Behind_Master")
    running = status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes"
    if not running or lag is None:
        return Health("down", None if lag is None else int(lag))
    return Health("ok" if int(lag) <= max_lag else "lagging", int(lag))


def probe() -> Health:
    """Ask the replica now; any database error (down, refused, no privilege) is "down"."""
    replica = connections[REPLICA]
    try:
        with replica.cursor() as cursor:
            cursor.execute("SHOW SLAVE STATUS")
            row = cursor.fetchone()
            names = [column[0] for column in cursor.description or ()]
    except DatabaseError as exc:
        logger.warning("Replica unusable, reading from the primary: %s", exc)
        _close_quietly()
        return DOWN
    return judge(dict(zip(names, row, strict=True)) if row else None, settings.AUDIT_REPLICA_MAX_LAG_SECONDS)


@dataclass
class _Cache:
    health: Health = DOWN
    checked_at: float = float("-inf")
    lock: threading.Lock = field(default_factory=threading.Lock)


_cache = _Cache()


def health() -> Health:
    """The replica's health, probed at most every ``PROBE_INTERVAL`` seconds per process.
    One thread probes; the others meanwhile use the previous answer instead of waiting."""
    if time.monotonic() - _cache.checked_at < PROBE_INTERVAL or not _cache.lock.acquire(blocking=False):
        return _cache.health
    try:
        _cache.health, _cache.checked_at = probe(), time.monotonic()
    finally:
        _cache.lock.release()
    return _cache.health


def replica_status() -> dict[str, Any] | None:
    """``{"state", "lag_seconds"}`` for the health check and the dashboard; None without a replica."""
    return health().as_dict() if configured() else None


def mark_down() -> None:
    """A read on the replica just failed: read from the primary until the next probe."""
    _cache.health, _cache.checked_at = DOWN, time.monotonic()
    _close_quietly()


def forget() -> None:
    """Probe again on the next read (tests, and a process that wants a fresh answer)."""
    _cache.health, _cache.checked_at = DOWN, float("-inf")


def _close_quietly() -> None:
    if REPLICA in connections:
        with contextlib.suppress(DatabaseError):  # it is already gone: nothing to close
            connections[REPLICA].close()


# --- the scope and the router ------------------------------------------------------------


@dataclass
class _Scope:
    models: frozenset[type[Model]]
    used: bool = False  # whether a read was sent to the replica


_scope: ContextVar[_Scope | None] = ContextVar("replica_scope", default=None)


@contextmanager
def replica_reads(*models: type[Model]) -> Iterator[_Scope]:
    """Reads of ``models`` inside this block may go to the replica (see the module's rules)."""
    token = _scope.set(_Scope(frozenset(models)))
    try:
        yield _scope.get()  # type: ignore[misc]
    finally:
        _scope.reset(token)


def _in_transaction() -> bool:
    # A test case's own atomic blocks (Django marks them, as its ``durable`` check does) are
    # not a transaction of the code under test.
    blocks = connections[DEFAULT_DB_ALIAS].atomic_blocks
    return any(not getattr(block, "_from_testcase", False) for block in blocks)


def read_alias(model: type[Model]) -> str:
    scope = _scope.get()
    if scope is None or model not in scope.models or not configured() or _in_transaction():
        return DEFAULT_DB_ALIAS
    if not health().usable:
        return DEFAULT_DB_ALIAS
    scope.used = True
    return REPLICA


class ReplicaRouter:
    """Installed only with a replica configured (``DATABASE_ROUTERS``)."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        # Always an answer: without one Django would follow an instance read from the
        # replica to its related objects (a user, a token) on the replica too.
        return read_alias(model)

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        # Both aliases hold the same rows.
        aliases = {DEFAULT_DB_ALIAS, REPLICA}
        return True if {obj1._state.db, obj2._state.db} <= aliases else None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db == DEFAULT_DB_ALIAS


# --- views -------------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def reads_from_replica(*models: type[Model]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a read-only view (or view method) with its reads of ``models`` on the replica; when
    the replica fails under it, or lacks what it looked for (404), run it again on ``default``.
    Only for views that read everything before they write anything."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                with replica_reads(*models) as scope:
                    return view(*args, **kwargs)
            except OperationalError:
                if not (scope.used and connections[REPLICA].errors_occurred):
                    raise  # not the replica's failure
                logger.warning("A read on the replica failed: reading from the primary", exc_info=True)
                mark_down()
            except Http404:
                if not scope.used:
                    raise
            return view(*args, **kwargs)

        return wrapper

    return decorate
