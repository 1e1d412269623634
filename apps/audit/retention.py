"""Retention: export, then delete, whole sealed segments older than a date.

Only a prefix of the chain is ever purged (the oldest segments, each entirely before
the date), the events are written to an NDJSON file first, rows go in batches, and the
checkpoints stay: ``verify()`` then checks the purged part through its checkpoints
(linkage and signatures) and everything after it in full.  Needs the privileged
database account: the app's own may not delete audit rows.

The file is the API's NDJSON export of the purged events (``exporting.ndjson_lines``):
raw column values, datetimes to the microsecond.  It is all that is left of those events,
so it must hold every value the chain sealed: re-chained line by line, it ends in each
purged segment's head hash (``archives.verify_archive`` checks it: ``audit_verify --archive``).

Captured bodies (``apps.audit.evidence``) are not archived: they are deleted with the links
of the purged events, once no kept event names them.  Evidence is the most sensitive thing
the trail holds and must not outlive its retention; the archive keeps each event's sealed
``evidence`` (digests, sizes, redacted headers), so it still re-chains.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from django.db import models, transaction
from django.db.models import Max

from apps.audit import exporting
from apps.audit.evidence import storage as evidence_storage
from apps.audit.models import AuditEvent, AuditEventHash, AuditPurge, AuditSeal

BATCH = 5000


def purged_through() -> int:
    return AuditPurge.objects.aggregate(last=Max("through_seq"))["last"] or 0


def purgeable_segments(before: datetime) -> list[AuditSeal]:
    """The oldest sealed segments whose every event occurred before ``before``."""
    chosen = []
    for seal in AuditSeal.objects.filter(last_seq__gt=purged_through()).order_by("first_seq"):
        events = AuditEvent.objects.filter(id__gte=seal.first_seq, id__lte=seal.last_seq)
        newest = events.aggregate(newest=Max("occurred_at"))["newest"]
        if newest is not None and newest >= before:
            break
        chosen.append(seal)
    return chosen


def purge(before: datetime, export_dir: Path, progress: Callable[[int], None] | None = None) -> AuditPurge | None:
    segments = purgeable_segments(before)
    if not segments:
        return None
    first, last = segments[0].first_seq, segments[-1].last_seq
    # An interrupted purge is finished first, over its own range, whatever the date now says:
    # its archive holds events already deleted, and a file over a longer range, written from
    # what is left, would not.
    last = _interrupted_purge_end(export_dir, first) or last
    target = export_dir / f"audit-events-{first}-{last}.ndjson"
    _archive(AuditEvent.objects.filter(id__gte=first, id__lte=last), target)
    deleted = 0
    for low in range(first, last + 1, BATCH):
        high = min(low + BATCH - 1, last)
        with transaction.atomic():
            # The model refuses deletes; retention is the one sanctioned exception.
            count, _ = models.QuerySet.delete(AuditEvent.objects.filter(id__gte=low, id__lte=high))
            AuditEventHash.objects.filter(seq__gte=low, seq__lte=high).delete()
            evidence_storage.delete_links(low, high)
        deleted += count
        if progress:
            progress(high - low + 1)
    # Then the captured bodies no kept event names (those of an interrupted purge too).
    evidence_storage.delete_unreferenced()
    return AuditPurge.objects.create(through_seq=last, events=deleted, export_file=str(target))


def _interrupted_purge_end(export_dir: Path, first: int) -> int | None:
    """The last id of an archive starting at ``first``: only an interrupted purge leaves one
    (a finished purge moves the start of the next one past its range)."""
    for path in export_dir.glob(f"audit-events-{first}-*.ndjson"):
        return int(path.stem.rsplit("-", 1)[1])
    return None


def _archive(events: models.QuerySet[AuditEvent], target: Path) -> None:
    """Write ``events`` to ``target`` as the API's NDJSON export, durably, unless it is there.

    Not through Django's JSON encoder: it cuts datetimes to the millisecond, and the chain
    sealed them to the microsecond, so such a file could no longer be checked against the
    checkpoints.  The raw export keeps what is stored, in constant memory.

    The file is written beside its name, synced, then renamed into place, so a ``target``
    that exists is complete.  A purge run again after an interruption keeps it: the events
    the first run already deleted are in that file only, and rewriting it from what is left
    would lose them."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as handle:
        for chunk in exporting.ndjson_lines(events):
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself, before any event is deleted
    finally:
        os.close(directory)
