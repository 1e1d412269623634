"""The external checkpoint file: one JSON object a line, one line per checkpoint, in order.

Two writers may append on one host: the sealer (``apps.audit.sealing``) when its host won
the sealer lock, and the witness (``apps.audit.witnessing``), which copies the checkpoints
other hosts sealed.  Both write under an exclusive ``flock`` on the file and look at its last
line first, so their lines never interleave and a checkpoint is never written twice; readers
take a shared lock, so they never see half a line.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

Line = dict[str, Any]
_TAIL_BLOCK = 8192


@contextmanager
def locked(path: Path) -> Iterator[IO[str]]:
    """The file open for reading and appending (created if need be), exclusively locked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle  # closing the file releases the lock


def read(path: Path) -> list[Line]:
    """Every line of the file, under a shared lock."""
    with path.open(encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        return list(lines(handle))


def lines(handle: IO[str]) -> Iterator[Line]:
    """The lines of an open file, from the start, one at a time (constant memory)."""
    handle.seek(0)
    for text in handle:
        if text.strip():
            yield json.loads(text)


def last_line(handle: IO[str]) -> Line | None:
    """The last line, read from the end: the file grows by a line a minute for years."""
    handle.seek(0, os.SEEK_END)
    end = handle.tell()
    binary = handle.buffer  # type: ignore[attr-defined]
    size = _TAIL_BLOCK
    while True:
        start = max(0, end - size)
        binary.seek(start)
        tail = binary.read(end - start).rstrip(b"\n")
        if b"\n" in tail or start == 0:
            last = tail.rsplit(b"\n", 1)[-1]
            return json.loads(last) if last.strip() else None
        size *= 2


def append(handle: IO[str], line: Line) -> None:
    """Append one line and make it durable before the lock is released."""
    handle.seek(0, os.SEEK_END)
    handle.write(json.dumps(line, sort_keys=True) + "\n")
    handle.flush()
    os.fsync(handle.fileno())
