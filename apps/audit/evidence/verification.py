"""``audit_verify``'s check of captured bodies: each digest a sealed event names must be a blob
whose content still hashes to it.

The chain walk (``apps.audit.sealing``) already reads every sealed row, ``evidence`` included,
so the events with evidence are found without another scan of the trail; their digests are
checked in batches, MariaDB hashing the blobs (no body crosses the connection).  Going by the
sealed digests rather than by the link table also catches a link deleted with its blob.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from apps.audit.evidence import storage

MISSING, MISMATCH = "missing", "mismatch"


@dataclass(frozen=True)
class Named:
    """A body a sealed event names: its seq, direction and the SHA-256 of the stored bytes."""

    seq: int
    direction: str
    sha256: str


def named_in(seq: int, evidence: str | None) -> Iterator[Named]:
    """The stored bodies an event's raw ``evidence`` column names (none for a withheld or empty one)."""
    if not evidence:
        return
    try:
        record = json.loads(evidence)
    except ValueError:  # not what the gateway writes: the chain reports the row as altered
        return
    if not isinstance(record, dict):
        return
    for direction, side in record.items():
        if isinstance(side, dict) and isinstance(side.get("sha256"), str) and side["sha256"]:
            yield Named(seq, direction, side["sha256"])


def problems(named: list[Named]) -> Iterator[tuple[str, Named]]:
    """(MISSING or MISMATCH, the body) for each named body that is not stored as sealed."""
    stored = storage.stored_digests(sorted({n.sha256 for n in named}))
    for body in named:
        actual = stored.get(body.sha256)
        if actual is None:
            yield MISSING, body
        elif actual != body.sha256:
            yield MISMATCH, body
