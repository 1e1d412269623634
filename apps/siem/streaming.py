"""The streamer: one process per sink, polling the trail and delivering it (``audit_stream``).

It runs apart from the gateway and only reads what the gateway committed, so a slow, hung or
unreachable receiver never slows or blocks a request: the trail waits in the database, and the
cursor resumes where the receiver last acknowledged.  One streamer per sink across every web
host: each holds a MariaDB named lock for its cursor (``apps.core.mariadb.locks``), which dies
with its connection, so cron's next run on any host takes over within a minute of a streamer's death.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from apps.core.mariadb.locks import NamedLock
from apps.siem.cursor import Batch, Position, next_batch, start_position
from apps.siem.lines import EVENT, Line
from apps.siem.models import SinkCursor
from apps.siem.sinks import DeliveryFailed, Sink

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0


@dataclass
class Options:
    grace: timedelta
    max_lines: int = 500
    max_bytes: int = 1 << 20
    checkpoints_back: int = 0  # where a new cursor starts (``cursor.start_position``)


@dataclass
class Totals:
    events: int = 0
    checkpoints: int = 0
    failures: int = 0


class Busy(Exception):
    """Another streamer holds this sink's lock."""


def sink_lock(cursor_name: str) -> NamedLock:
    """The lock of one sink's streamer (its cursor's name stands for the sink)."""
    return NamedLock(f"siem.{cursor_name}")


class Streamer:
    def __init__(self, name: str, sink: Sink, options: Options, *, sleep: Callable[[float], None] = time.sleep):
        self.name, self.sink, self.options, self.sleep = name, sink, options, sleep
        self.totals = Totals()
        self.lock = sink_lock(name)
        self._backoff = 0.0

    def run(self, *, seconds: float, once: bool = False) -> Totals:
        """Stream for ``seconds`` (or, ``once``, until nothing is left to send or a delivery fails)."""
        deadline = time.monotonic() + seconds
        with self.lock.holding(wait=0) as taken:
            if not taken:  # a second streamer for the sink exits
                raise Busy(f"another streamer holds {self.lock.name}")
            cursor = self._cursor()
            try:
                while time.monotonic() < deadline:
                    sent = self.step(cursor)
                    if once and (sent is None or sent == 0):
                        break
                    if not sent:
                        self.sleep(min(self._backoff or POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            finally:
                self.sink.close()
        return self.totals

    def step(self, cursor: SinkCursor) -> int | None:
        """One poll: the lines sent (0: nothing to send), or None if the delivery failed."""
        batch = next_batch(
            Position.of(cursor), now=timezone.now(), grace=self.options.grace,
            max_lines=self.options.max_lines, max_bytes=self.options.max_bytes,
        )  # fmt: skip
        if not batch.lines:
            if batch.after != Position.of(cursor):  # only gaps decided: the low water moved
                self._save(cursor, batch, [])
            return 0
        try:
            self.sink.deliver(batch.lines)
        except DeliveryFailed as error:
            self._failed(cursor, error)
            return None
        self._backoff = 0.0
        self._save(cursor, batch, batch.lines)
        return len(batch.lines)

    def _cursor(self) -> SinkCursor:
        cursor = SinkCursor.objects.filter(name=self.name).first()
        if cursor is not None:
            if cursor.kind != self.sink.kind:
                raise ValueError(f"cursor {self.name!r} belongs to a {cursor.kind} sink, not {self.sink.kind}")
            return cursor
        cursor = SinkCursor(name=self.name, kind=self.sink.kind)
        start_position(self.options.checkpoints_back).store(cursor)
        cursor.save()
        return cursor

    def _save(self, cursor: SinkCursor, batch: Batch, sent: list[Line]) -> None:
        if not self.lock.held():
            # The lock died with a replaced connection: another streamer may run by now, and
            # this one must not write the cursor back over it.
            raise Busy(f"lost {self.lock.name}: its database connection was replaced")
        batch.after.store(cursor)
        events = [line for line in sent if line.kind == EVENT]
        self.totals.events += len(events)
        self.totals.checkpoints += len(sent) - len(events)
        fields = ["low_water", "done", "assumed_gaps", "checkpoint_through", "updated_at"]
        if sent:
            now = timezone.now()
            cursor.events_sent += len(events)
            cursor.checkpoints_sent += len(sent) - len(events)
            cursor.last_sent_at, cursor.last_error = now, ""
            lag = _lag(events, now)
            if lag is not None:
                cursor.last_lag_seconds = lag
            fields += ["events_sent", "checkpoints_sent", "last_sent_at", "last_lag_seconds", "last_error"]
        cursor.save(update_fields=fields)

    def _failed(self, cursor: SinkCursor, error: DeliveryFailed) -> None:
        self.totals.failures += 1
        self._backoff = min(BACKOFF_MAX, max(BACKOFF_FIRST, self._backoff * 2))
        logger.warning("SIEM sink %s: delivery failed, retrying in %.1f s: %s", self.name, self._backoff, error)
        cursor.last_error = str(error)[:500]
        cursor.save(update_fields=["last_error", "updated_at"])


def _lag(events: list[Line], now: datetime) -> float | None:
    """Seconds from the newest sent event's completion to now (its acknowledgement)."""
    completed = [line.fields.get("completed_at") for line in events]
    latest = max((c for c in completed if isinstance(c, str)), default=None)
    if latest is None:
        return None
    return round((now - datetime.fromisoformat(latest)).total_seconds(), 3)
