"""Which lines a sink sends next, and where its durable cursor stands once they are acknowledged.

Events go out once complete (``completed_at`` set), in id order, a few seconds after they
complete: a long-open attempt does not hold back the events after it.  The cursor
(``SinkCursor``) is a low water (every id up to it sent, or known never to exist) plus the
ranges done above it.

Ids are allocated before their rows commit (``apps.audit.group_commit``), so an id missing
now may appear later.  A missing id stays pending until a row *after* it was recorded more than
the grace ago (the sealer's reasoning, with seconds instead of its minute); only then is it
taken as a rolled-back insert, a gap, and remembered as an *assumed* gap.  Should a row with
that id turn up after all, it is sent late; and a checkpoint goes out only once every id it
covers is done, after sending any id the checkpoint holds that was assumed a gap.  So an event
is never skipped for good, whatever the clocks did.  An attempt that never completes is closed
by ``audit_reconcile`` after 5 minutes, so the low water cannot stall forever.

Checkpoints (``AuditSeal``) go out in ``last_seq`` order once the low water has reached their
``last_seq``: a receiver then holds every id of the range but its ``gaps`` and can re-chain them
to its ``head_hash``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce

from django.db.models import Q

from apps.audit.models import AuditEvent, AuditSeal
from apps.siem import ranges
from apps.siem.lines import Line, checkpoint_line, event_lines
from apps.siem.models import SinkCursor
from apps.siem.ranges import Ranges

# Unsent rows read per poll: open attempts and the events after them.
WINDOW = 5000
_SEALS_PER_BATCH = 20


@dataclass
class Position:
    """The durable part of a cursor."""

    low_water: int
    done: Ranges = field(default_factory=list)
    assumed_gaps: Ranges = field(default_factory=list)
    checkpoint_through: int = 0

    @classmethod
    def of(cls, cursor: SinkCursor) -> Position:
        return cls(cursor.low_water, cursor.done, cursor.assumed_gaps, cursor.checkpoint_through)

    def store(self, cursor: SinkCursor) -> None:
        cursor.low_water, cursor.done = self.low_water, self.done
        cursor.assumed_gaps, cursor.checkpoint_through = self.assumed_gaps, self.checkpoint_through


@dataclass
class Batch:
    lines: list[Line]
    after: Position  # the position once every line is acknowledged


def start_position(checkpoints_back: int = 0) -> Position:
    """Where a new cursor starts: after the last checkpoint, or at the start of the
    ``checkpoints_back``-th last one (so that a receiver gets whole segments it can verify)."""
    seals = list(AuditSeal.objects.order_by("-last_seq")[: checkpoints_back + 1])
    if not seals:
        return Position(low_water=0)
    if checkpoints_back == 0 or len(seals) <= checkpoints_back:
        start = seals[-1].last_seq if checkpoints_back == 0 else seals[-1].first_seq - 1
    else:
        start = seals[checkpoints_back - 1].first_seq - 1
    return Position(low_water=start, checkpoint_through=start)


def next_batch(
    position: Position, *, now: datetime, grace: timedelta, max_lines: int = 500, max_bytes: int = 1 << 20
) -> Batch:
    """The lines to send now, and the position once they are acknowledged."""
    late, assumed = _late_events(position.assumed_gaps)
    ready, gaps = _ready_and_gaps(position, now - grace, max_lines)
    lines = late + event_lines(ready)
    lines, ready, gaps = _cut(lines, ready, gaps, max_bytes)
    done = position.done
    for lo, hi in gaps:
        done = ranges.add_range(done, lo, hi)
        assumed = ranges.add_range(assumed, lo, hi)
    low_water, done = ranges.advance(position.low_water, ranges.add(done, ready))
    after = Position(low_water, done, assumed, position.checkpoint_through)
    lines.extend(_checkpoints(after))
    return Batch(lines, after)


def _late_events(assumed: Ranges) -> tuple[list[Line], Ranges]:
    """Rows that turned up, complete, in ids once assumed gaps: sent late, no longer assumed."""
    if not assumed:
        return [], assumed
    found = list(
        AuditEvent.objects.filter(_within_any(assumed), completed_at__isnull=False).values_list("id", flat=True)
    )
    still = assumed
    for seq in found:
        still = _without(still, seq)
    return event_lines(sorted(found)), still


def _ready_and_gaps(position: Position, cutoff: datetime, max_lines: int) -> tuple[list[int], list[tuple[int, int]]]:
    """The complete, unsent events in id order, and the runs of missing ids now taken as gaps."""
    ready: list[int] = []
    gaps: list[tuple[int, int]] = []
    expected, deciding = position.low_water + 1, True
    for seq, completed_at in _unsent(position):
        # Once one run of missing ids is still pending, every later one is too: fewer rows follow it.
        if deciding:
            for lo, hi in ranges.missing(position.done, expected, seq - 1):
                if not _recorded_after(hi, cutoff):
                    deciding = False
                    break
                gaps.append((lo, hi))
        if completed_at is not None:
            ready.append(seq)
            if len(ready) >= max_lines:
                break
        expected = seq + 1
    return ready, gaps


def _unsent(position: Position) -> list[tuple[int, datetime | None]]:
    """(id, completed_at) of the rows above the low water not done yet, in id order."""
    rows = AuditEvent.objects.filter(id__gt=position.low_water)
    if position.done:
        rows = rows.exclude(_within_any(position.done))
    return list(rows.order_by("id").values_list("id", "completed_at")[:WINDOW])


def _within_any(rs: Ranges) -> Q:
    return reduce(lambda q, r: q | Q(id__range=(r[0], r[1])), rs, Q())


def _recorded_after(seq: int, cutoff: datetime) -> bool:
    """Whether a row after ``seq`` was recorded before ``cutoff``: then ``seq`` had the grace to
    commit and did not.  A primary-key range scan that stops at the first such row."""
    return AuditEvent.objects.filter(id__gt=seq, recorded_at__lt=cutoff).exists()


def _cut(
    lines: list[Line], ready: list[int], gaps: list[tuple[int, int]], max_bytes: int
) -> tuple[list[Line], list[int], list[tuple[int, int]]]:
    """At most ``max_bytes`` of lines (at least one): the ready events and gaps past the cut wait."""
    total, kept = 0, 0
    for line in lines:
        total += len(line.body) + 1
        if kept and total > max_bytes:
            break
        kept += 1
    if kept == len(lines):
        return lines, ready, gaps
    last = max((line.seq for line in lines[:kept]), default=0)
    return lines[:kept], [s for s in ready if s <= last], [g for g in gaps if g[1] < last]


def _checkpoints(after: Position) -> list[Line]:
    """The checkpoints whose every id is done, in order; each after the events it holds that were
    assumed gaps (sent late here).  Updates ``after``."""
    lines: list[Line] = []
    seals = AuditSeal.objects.filter(last_seq__gt=after.checkpoint_through, last_seq__lte=after.low_water)
    for seal in seals.order_by("last_seq")[:_SEALS_PER_BATCH]:
        sealed_gaps = set(seal.gaps)
        owed = [s for s in ranges.ids(_within(after.assumed_gaps, seal)) if s not in sealed_gaps]
        lines.extend(event_lines(owed))
        lines.append(checkpoint_line(seal))
        after.assumed_gaps = ranges.above(after.assumed_gaps, seal.last_seq)
        after.checkpoint_through = seal.last_seq
    return lines


def _within(assumed: Ranges, seal: AuditSeal) -> Ranges:
    return ranges.below(ranges.above(assumed, seal.first_seq - 1), seal.last_seq)


def _without(rs: Ranges, seq: int) -> Ranges:
    kept: Ranges = []
    for lo, hi in rs:
        if lo <= seq <= hi:
            kept.extend(r for r in ([lo, seq - 1], [seq + 1, hi]) if r[0] <= r[1])
        else:
            kept.append([lo, hi])
    return kept
