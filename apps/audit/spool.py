"""The outcome spool: where a gateway attempt's outcome is durable before its thread is released.

Phase 2 of an attempt (``apps.audit.recording``) used to be a committed UPDATE in the
request's thread: a round trip and a redo-log flush, half a millisecond of every request's
latency, and one commit per request for MariaDB.  Now ``finish()`` appends the outcome as
one line to this process's spool file (one ``write()``, about a microsecond) and returns; a
drainer thread in the same process writes what was spooled into MariaDB, many outcomes per
transaction, and only then deletes the file.

What a ``write()`` guarantees: the line is in the kernel's page cache when it returns, so it
survives a crash of this process and of Apache (both are only processes); a power loss of
the host may lose the last lines not yet drained (normally milliseconds).  The attempt
itself is still committed in MariaDB before anything is forwarded (fail-closed).

Nothing is lost or doubled:

- a segment file is deleted only after its outcomes are committed;
- writing an outcome is idempotent (``record_outcome`` writes only an attempt that has none),
  so a segment drained twice (a crash between the commit and the delete) changes nothing;
- each process holds an exclusive ``flock`` on its segments; the kernel drops it when the
  process dies, which is how another process (the next daemon that starts, or
  ``audit_reconcile``) knows a segment is an orphan and drains it;
- ``audit_reconcile`` applies every spooled outcome, of live processes too, before it closes
  any attempt as interrupted (``apps.audit.reconciling``).

When the spool cannot be written (a full disk, a wrong permission) the outcome is written
to MariaDB at once, as before; when MariaDB is away the segments wait on disk, bounded by
the disk, not by memory.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils.dateparse import parse_datetime

logger = logging.getLogger(__name__)

SUFFIX = ".outcomes"
# Outcomes per transaction when draining: a segment spooled during an outage can be large.
BATCH = 500
# After a failed drain, the drainer tries again after this long, doubling up to the maximum.
RETRY_SECONDS, RETRY_MAX_SECONDS = 0.05, 2.0

Record = tuple[int, dict[str, Any]]


def encode(event_id: int, outcome: dict[str, Any]) -> bytes:
    values = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in outcome.items()}
    return json.dumps([event_id, values], separators=(",", ":")).encode() + b"\n"


def decode(data: bytes) -> Iterator[Record]:
    """The records of a segment; a last line without its newline was never acknowledged."""
    lines = data.split(b"\n")
    for line in lines[:-1]:
        event_id, values = json.loads(line)
        if "completed_at" in values:
            values["completed_at"] = parse_datetime(values["completed_at"])
        yield event_id, values


def write_outcomes(records: Iterable[Record]) -> int:
    """Commit these outcomes, ``BATCH`` per transaction; returns how many were new."""
    from apps.audit.models import AuditEvent  # the models import this module's users

    written, batch = 0, []
    for record in records:
        batch.append(record)
        if len(batch) == BATCH:
            written += _commit(AuditEvent, batch)
            batch = []
    return written + (_commit(AuditEvent, batch) if batch else 0)


def _commit(model: Any, batch: list[Record]) -> int:
    if len(batch) == 1:  # autocommit: one round trip, where a transaction costs three more
        event_id, outcome = batch[0]
        return int(model.objects.record_outcome(event_id, **outcome))
    with transaction.atomic():
        return sum(model.objects.record_outcome(event_id, **outcome) for event_id, outcome in batch)


def _locked(fd: int) -> bool:
    """Take the segment's lock if nobody holds it (its process is gone): True if taken."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def apply_segments(directory: Path, *, live_too: bool) -> int:
    """Drain the orphaned segments of ``directory`` (and delete them); with ``live_too``, also
    apply the lines already spooled by live processes (they stay: their drainer deletes them).
    Returns how many outcomes were new to the database."""
    written = 0
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # its drainer finished with it meanwhile
            continue
        try:
            orphan = _locked(fd)
            if not (orphan or live_too) or os.fstat(fd).st_nlink == 0:
                continue
            written += write_outcomes(decode(path.read_bytes()))
            if orphan:
                path.unlink(missing_ok=True)
                logger.warning("Audit outcome spool %s of a process that is gone: drained", path.name)
        finally:
            os.close(fd)
    return written


class Spool:
    """This process's spool: ``append`` from any thread, one drainer thread (or ``drain`` inline)."""

    def __init__(self, directory: Path, tag: str, *, threaded: bool = True, linger: float = 0.0):
        self.directory = directory
        self._tag = tag
        self._threaded = threaded
        self._linger = linger
        self._lock = threading.Lock()  # the current segment
        self._drain_lock = threading.Lock()  # one drain at a time (the drainer, or close() at exit)
        self._wake = threading.Event()
        self._serial = 0
        self._fd = -1
        self._path = Path()
        self._count = 0  # lines in the current segment
        self._full: deque[tuple[int, Path]] = deque()  # segments waiting for the database
        self._drainer: threading.Thread | None = None
        self.drained = 0  # outcomes committed by this spool

    def _open_segment(self) -> None:
        self._serial += 1
        self._path = self.directory / f"{self._tag}-{self._serial:08d}{SUFFIX}"
        # Made under another name and locked before it is named a segment: a scan for orphans
        # must never find a segment whose lock is free only because it was just created.
        making = self._path.with_suffix(".new")
        self._fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)  # held until the segment is drained, or the process dies
        os.rename(making, self._path)
        self._count = 0

    def append(self, event_id: int, outcome: dict[str, Any]) -> None:
        """Durable (against a crash of this process) when it returns; raises OSError if it cannot be."""
        line = encode(event_id, outcome)
        with self._lock:
            if self._fd < 0:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._open_segment()
            os.write(self._fd, line)
            self._count += 1
        if not self._threaded:
            try:
                self.drain()
            except DatabaseError:  # the segment waits for the next drain
                logger.warning("Audit outcomes wait in the spool: database unavailable")
            return
        if self._drainer is None:
            self._start()
        self._wake.set()

    def _rotate(self) -> None:
        """Hand the current segment to the drainer; the next ``append`` opens a new one."""
        with self._lock:
            if self._count:
                self._full.append((self._fd, self._path))
                self._fd, self._count = -1, 0

    def drain(self) -> int:
        """Commit every full segment, oldest first; raises DatabaseError and keeps what is left."""
        with self._drain_lock:
            self._rotate()
            written = 0
            while self._full:
                fd, path = self._full[0]
                written += write_outcomes(decode(path.read_bytes()))
                path.unlink()
                os.close(fd)  # and with it the lock
                self._full.popleft()
            self.drained += written
            return written

    def pending(self) -> int:
        """Segments not yet committed (the current one included, if it has lines)."""
        with self._lock:
            return len(self._full) + (1 if self._count else 0)

    def _start(self) -> None:
        with self._lock:
            if self._drainer is not None:
                return
            self._drainer = threading.Thread(target=self._run, name="audit-spool-drainer", daemon=True)
        self._drainer.start()

    def _run(self) -> None:
        delay = 0.0
        try:  # segments a crashed process left behind (its lock went with it)
            apply_segments(self.directory, live_too=False)
        except (DatabaseError, OSError):
            logger.exception("Audit outcome spool: orphaned segments not drained yet")
        while True:
            self._wake.wait(timeout=delay or None)
            if self._linger:  # let more outcomes join this transaction: one commit for all
                time.sleep(self._linger)
            self._wake.clear()
            try:
                self.drain()
                delay = 0.0
            except DatabaseError:
                logger.warning("Audit outcomes wait in the spool: database unavailable (%d segments)", self.pending())
                connection.close()  # the next attempt reconnects
                delay = min(max(delay * 2, RETRY_SECONDS), RETRY_MAX_SECONDS)
            except Exception:  # a bug: keep the segments, say it loudly, and try again later
                logger.exception("Audit outcome spool: drain failed")
                delay = RETRY_MAX_SECONDS

    def close(self) -> None:
        """At the process's exit: drain what can be drained now; the rest waits on disk."""
        try:
            self.drain()
        except (DatabaseError, OSError):
            logger.error("Audit outcome spool: %d segments left for the next drainer", self.pending())


def wait_drained(spool: Spool, timeout: float) -> bool:
    """Whether everything appended so far was committed within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while spool.pending():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
