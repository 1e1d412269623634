"""An auditor's check of a purge archive against the checkpoints that outlive its events.

Retention (``apps.audit.retention``) exports whole sealed segments to an NDJSON file and
deletes them; their checkpoints (``AuditSeal``) stay.  ``verify_archive`` reads such a file
line by line, in constant memory, rebuilds from each line the row the sealer hashed
(``sealed_row``) and re-chains every segment the file covers: it must start from its
checkpoint's ``prev_hash``, hold exactly the checkpoint's ids (minus its ``gaps``) in order,
and end in its ``head_hash``.  The covered checkpoints must link and, with the seal key ring, be
signed (each under the key its ``key_id`` names, as ``sealing.verify`` checks them);
and an archive of a purged range must start and end where a purge did, or whole segments
were cut from its ends.

Missing, reordered, duplicated and never-sealed ids, and lines that are not events, are named
with their id and line.  A changed value is named by its segment only: the per-event hashes
were purged with the events, so a segment's head hash is all that is left to compare.
``actor_id`` is not sealed (Django sets it to NULL when a user is deleted; ``actor_username``
keeps who it was), so an archive's ``actor_id`` is not checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from django.db.models import Max

from apps.audit.choices import ProblemKind
from apps.audit.models import AuditPurge, AuditSeal
from apps.audit.retention import purged_through
from apps.audit.sealing import (
    ID,
    SEALED_FIELDS,
    V1_EMPTY,
    V1_WIDTH,
    V2_WIDTH,
    Problem,
    Report,
    Row,
    chain,
    verify_checkpoint,
)

# A file that is not an archive at all would otherwise yield a problem per line.
MAX_PROBLEMS = 100
_SEAL_PAGE = 1000
_PROGRESS_EVERY = 10_000

# --- one line back into the sealed row ----------------------------------------------------

ID_NAME = SEALED_FIELDS[ID].attname
_NAMES = tuple(f.attname for f in SEALED_FIELDS)
_V1_NAMES, _V2_NAMES = _NAMES[:V1_WIDTH], _NAMES[V1_WIDTH:]  # _V2_NAMES: every column after version 1's
_V2_ONLY = frozenset(_NAMES[V1_WIDTH:V2_WIDTH])  # the columns version 2 added (version 3's come after)
_DATETIMES, _JSONS, _BOOLEANS = (
    [i for i, f in enumerate(SEALED_FIELDS) if f.get_internal_type() == kind]
    for kind in ("DateTimeField", "JSONField", "BooleanField")
)


def sealed_row(line: dict[str, Any]) -> Row:
    """The row the chain hashed, rebuilt from one archived NDJSON line (``exporting.ndjson_lines``):
    the sealed columns in table order; datetimes as MariaDB hands them to the sealer
    (``datetime.isoformat()``, naive UTC); JSON columns as the text Django's JSONField stored
    (``json.dumps``); booleans as the 0/1 MariaDB returns.  Values only change form here, never
    precision or meaning.  Raises KeyError, TypeError or ValueError for a line that is not an event."""
    # Only the few columns that change form are touched: a function call per column was
    # most of the check's time.
    row = [line[name] for name in _V1_NAMES]
    version = line["schema_version"]
    if version in (1, 2):  # exported before the later versions added their columns, or after
        row.extend(
            line[name] if version == 2 and name in _V2_ONLY else line.get(name, empty)
            for name, empty in zip(_V2_NAMES, V1_EMPTY, strict=True)
        )
    else:
        row.extend(line[name] for name in _V2_NAMES)
    for i in _DATETIMES:
        if row[i] is not None:
            row[i] = _sealed_datetime(row[i])
    for i in _JSONS:
        if row[i] is not None:
            row[i] = json.dumps(row[i])  # as Django's JSONField wrote it: its separators, ASCII escapes
    for i in _BOOLEANS:
        if type(row[i]) is not bool:  # int() would take 1.5 for true: a value the export never writes
            raise TypeError(f"{_NAMES[i]} is not a boolean: {row[i]!r}")
        row[i] = int(row[i])
    return tuple(row)


def parse_line(raw: bytes) -> Any:
    """One archived line, parsed as the stdlib's ``json.loads`` would, for what ``sealed_row``
    keeps: by orjson (the stdlib was half of the check's time), but lines whose JSON columns
    hold a float, and lines orjson refuses (NaN, a lone surrogate), by the stdlib.  orjson reads
    an integer beyond 64 bits as a float, which would not write back as the text Django
    stored; the other columns are the export's own values, which orjson reads back exactly."""
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
    if isinstance(line, dict) and any(_holds_a_float(line.get(_NAMES[i])) for i in _JSONS):
        return json.loads(raw)
    return line


def _holds_a_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, list):
        return any(map(_holds_a_float, value))
    if isinstance(value, dict):
        return any(map(_holds_a_float, value.values()))
    return False


def _sealed_datetime(value: str) -> str:
    if isinstance(value, str) and len(value) == 27 and value[19] == "." and value[26] == "Z":
        # The export's own form, "2026-01-02T03:04:05.123456Z", by slicing: parsing every
        # datetime took a third of the check's time.  A string of this shape that is not a
        # time cannot re-chain: the sealer only ever hashed real ones.
        return value[:19] if value[20:26] == "000000" else value[:26]
    moment = datetime.fromisoformat(value)  # any other ISO-8601 form of the same instant
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat()


# --- the report ------------------------------------------------------------------------------


@dataclass
class ArchiveProblem(Problem):
    """Where an archive diverges: ``seq`` the first id concerned, ``line`` its line (1-based)."""

    line: int | None = None


@dataclass
class ArchiveReport(Report):
    archive: str = ""
    lines_read: int = 0
    first_seq: int | None = None  # the ids of the segments the archive covers
    last_seq: int | None = None
    purge_checked: bool = False  # the covered range was matched to the purges' boundaries

    @property
    def first_bad_line(self) -> int | None:
        lines = [p.line for p in self.problems if isinstance(p, ArchiveProblem) and p.line is not None]
        return min(lines) if lines else None

    def as_dict(self) -> dict[str, Any]:
        report = super().as_dict()
        # They describe the trail in the database, which this check does not read.
        del report["unsealed_tail"], report["checkpoint_file_checked"]
        return {
            "archive": self.archive,
            **report,
            "first_bad_line": self.first_bad_line,
            "lines_read": self.lines_read,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "purge_checked": self.purge_checked,
        }


# --- the check -------------------------------------------------------------------------------


def verify_archive(
    path: Path, *, keys: Mapping[str, str] | None = None, progress: Callable[[int], None] | None = None
) -> ArchiveReport:
    """Re-chain the archive at ``path`` against its checkpoints, checking their signatures with
    ``keys`` (the seal key ring: key id -> secret) if given; ``progress`` gets bytes read."""
    keys = keys or {}
    report = ArchiveReport(archive=str(path), signatures_checked=bool(keys))
    check = _ArchiveCheck(report, keys)
    unreported = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            unreported += len(raw)
            if progress and number % _PROGRESS_EVERY == 0:
                progress(unreported)
                unreported = 0
            if not raw.strip():  # a blank line holds no event: nothing to check
                continue
            report.lines_read += 1
            check.line(number, raw)
            if len(report.problems) >= MAX_PROBLEMS:
                report.problems.append(
                    ArchiveProblem(ProblemKind.TOO_MANY_PROBLEMS, None, "stopped reading", line=number)
                )
                return report
    if progress:
        progress(unreported)
    check.finish()
    return report


def _sealed_ids(seal: AuditSeal) -> Iterator[int]:
    gaps = set(seal.gaps)
    return (seq for seq in range(seal.first_seq, seal.last_seq + 1) if seq not in gaps)


def _checkpoints_from(seq: int) -> Iterator[AuditSeal]:
    """The checkpoints that end at or after ``seq``, in order, a page at a time (constant memory)."""
    while True:
        page = list(AuditSeal.objects.filter(last_seq__gte=seq).order_by("last_seq")[:_SEAL_PAGE])
        yield from page
        if len(page) < _SEAL_PAGE:
            return
        seq = page[-1].last_seq + 1


@dataclass
class _Segment:
    """A checkpoint being re-chained: stops at its first divergence, since with the per-event
    hashes purged nothing after it in the segment can be checked on its own."""

    seal: AuditSeal
    ids: Iterator[int]
    expected: int | None
    running: str
    first_line: int
    last_line: int
    problem: ArchiveProblem | None = None
    awaited: int | None = None  # an id not at its place: found later, it was reordered, not deleted
    found_at: int | None = None


@dataclass
class _Uncovered:
    """A run of lines whose ids no checkpoint in the database covers."""

    first_seq: int
    last_seq: int
    first_line: int
    last_line: int


class _ArchiveCheck:
    """Walks the archive's lines and the checkpoints side by side; ids only increase in a
    good archive, so the checkpoints are read once, in order."""

    def __init__(self, report: ArchiveReport, keys: Mapping[str, str]) -> None:
        self.report, self.keys = report, keys
        self.checkpoints: Iterator[AuditSeal] | None = None
        self.upcoming: AuditSeal | None = None  # the next checkpoint not entered yet
        self.previous_head: str | None = None  # of the last checkpoint passed, for linkage
        self.segment: _Segment | None = None
        self.uncovered: _Uncovered | None = None
        self.first_seal: AuditSeal | None = None
        self.last_seal: AuditSeal | None = None
        self.last_line = 0

    def problem(self, kind: str, seq: int | None, detail: str, line: int | None) -> ArchiveProblem:
        problem = ArchiveProblem(kind, seq, detail, line=line)
        self.report.problems.append(problem)
        return problem

    def line(self, number: int, raw: bytes) -> None:
        self.last_line = number
        row = self._parse(number, raw)
        if row is None:
            return
        seq = row[ID]
        if self.segment is None or seq > self.segment.seal.last_seq:
            if self.uncovered is not None and (self.upcoming is None or seq < self.upcoming.first_seq):
                self.uncovered.last_seq, self.uncovered.last_line = max(seq, self.uncovered.last_seq), number
                return
            self._move_to(number, seq)
        if self.segment is not None:
            self._chain(self.segment, number, seq, row)

    def _parse(self, number: int, raw: bytes) -> Row | None:
        try:
            line = parse_line(raw)
        except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            self.problem(ProblemKind.INVALID_LINE, None, f"line {number} is not valid JSON", number)
            return None
        seq = line.get(ID_NAME) if isinstance(line, dict) else None
        if type(seq) is not int:
            self.problem(
                ProblemKind.INVALID_LINE, None, f"line {number} is not an event: no integer {ID_NAME!r}", number
            )
            return None
        try:
            return sealed_row(line)
        except (KeyError, TypeError, ValueError) as error:
            self.problem(ProblemKind.INVALID_LINE, seq, f"line {number} (id {seq}) is not an event: {error!r}", number)
            return None

    # -- moving from checkpoint to checkpoint --

    def _move_to(self, number: int, seq: int) -> None:
        """Leave the current segment (or uncovered run) and enter the checkpoint holding ``seq``."""
        self._close()
        if self.checkpoints is None:  # the first line: the archive's checkpoints start here
            self.checkpoints = _checkpoints_from(seq)
            self.upcoming = next(self.checkpoints, None)
        first_skipped = last_skipped = None
        while self.upcoming is not None and self.upcoming.last_seq < seq:
            first_skipped, last_skipped = first_skipped or self.upcoming, self.upcoming
            self._pass(number, self.upcoming)
            self.upcoming = next(self.checkpoints, None)
        if first_skipped is not None and last_skipped is not None:
            self.problem(
                ProblemKind.INCOMPLETE, first_skipped.first_seq,
                f"the archive holds no event of ids {first_skipped.first_seq}..{last_skipped.last_seq} (whole"
                f" segments, from segment {first_skipped.pk}) before line {number}",
                number,
            )  # fmt: skip
        if self.upcoming is not None and self.upcoming.first_seq <= seq:
            self._enter(number, self.upcoming)
            self.upcoming = next(self.checkpoints, None)
        else:
            self.uncovered = _Uncovered(seq, seq, number, number)

    def _pass(self, number: int, seal: AuditSeal) -> None:
        """Check a checkpoint's linkage to the one before it and its signature; a problem is
        placed at ``number``, the line where its events start (or should have)."""
        problems = self.report.problems
        found_from = len(problems)
        verify_checkpoint(seal, self.previous_head or seal.prev_hash, self.keys, self.report)
        problems[found_from:] = [ArchiveProblem(p.kind, p.seq, p.detail, line=number) for p in problems[found_from:]]
        self.previous_head = seal.head_hash

    def _enter(self, number: int, seal: AuditSeal) -> None:
        self._pass(number, seal)
        ids = _sealed_ids(seal)
        self.segment = _Segment(seal, ids, next(ids, None), seal.prev_hash, number, number)
        self.first_seal = self.first_seal or seal
        self.last_seal = seal

    # -- inside a segment --

    def _chain(self, segment: _Segment, number: int, seq: int, row: Row) -> None:
        segment.last_line = number
        if segment.problem is not None:
            if seq == segment.awaited and segment.found_at is None:
                segment.found_at = number
        elif seq == segment.expected:
            segment.running = chain(segment.running, row)
            segment.expected = next(segment.ids, None)
            self.report.events_checked += 1
        else:
            self._diverge(segment, number, seq)

    def _diverge(self, segment: _Segment, number: int, seq: int) -> None:
        seal, expected = segment.seal, segment.expected
        if seq in seal.gaps:
            detail = f"line {number} holds id {seq}, which segment {seal.pk} records as never committed"
            segment.problem = self.problem(ProblemKind.INSERTED, seq, detail, number)
        elif expected is None or seq < expected:
            detail = f"line {number} holds id {seq} again or out of order (id {expected} was expected)"
            segment.problem = self.problem(ProblemKind.UNEXPECTED, seq, detail, number)
        else:  # deleted, unless it turns up later in the segment (told apart in _close_segment)
            detail = f"line {number} holds id {seq} where id {expected} of segment {seal.pk} was expected"
            segment.problem = self.problem(ProblemKind.DELETED, expected, detail, number)
            segment.awaited = expected

    def _close(self) -> None:
        if self.segment is not None:
            self._close_segment(self.segment)
        if self.uncovered is not None:
            run = self.uncovered
            self.problem(
                ProblemKind.CHECKPOINT_MISSING, run.first_seq,
                f"ids {run.first_seq}..{run.last_seq} (lines {run.first_line}..{run.last_line}) are in no checkpoint"
                " in the database: nothing to verify them against",
                run.first_line,
            )  # fmt: skip
        self.segment = self.uncovered = None

    def _close_segment(self, segment: _Segment) -> None:
        seal, problem = segment.seal, segment.problem
        if problem is not None:
            if segment.awaited is not None and segment.found_at is not None:
                problem.kind = ProblemKind.OUT_OF_ORDER
                problem.detail += f"; id {segment.awaited} comes later, at line {segment.found_at}"
            elif segment.awaited is not None:
                problem.detail += f"; id {segment.awaited} is not in the archive"
        elif segment.expected is not None:
            self.problem(
                ProblemKind.INCOMPLETE, segment.expected,
                f"segment {seal.pk} (ids {seal.first_seq}..{seal.last_seq}) stops after line {segment.last_line}:"
                f" id {segment.expected} should be at line {segment.last_line + 1}",
                segment.last_line + 1,
            )  # fmt: skip
        elif segment.running != seal.head_hash:
            self.problem(
                ProblemKind.ALTERED, seal.first_seq,
                f"segment {seal.pk} (ids {seal.first_seq}..{seal.last_seq}, lines {segment.first_line}.."
                f"{segment.last_line}) does not end in its head hash: a value in one of these lines was changed"
                " (which one cannot be told: the per-event hashes were purged with the events)",
                segment.first_line,
            )  # fmt: skip

    # -- the end --

    def finish(self) -> None:
        self._close()
        report = self.report
        if self.first_seal is None or self.last_seal is None:
            if not report.problems:
                self.problem(ProblemKind.INCOMPLETE, None, "the archive holds no event", None)
            return
        report.first_seq, report.last_seq = self.first_seal.first_seq, self.last_seal.last_seq
        self._check_purge_boundaries(self.first_seal, self.last_seal)

    def _check_purge_boundaries(self, first: AuditSeal, last: AuditSeal) -> None:
        """A purge archive starts after the previous purge and ends where a purge ended: else
        whole segments were cut from its ends, which re-chaining the segments left cannot see.
        An export of segments not purged is not checked: their events are still in the database."""
        purged = purged_through()
        if first.last_seq > purged:
            return
        self.report.purge_checked = True
        boundaries = AuditPurge.objects.values_list("through_seq", flat=True)
        start = boundaries.filter(through_seq__lt=first.first_seq).aggregate(start=Max("through_seq"))["start"] or 0
        cut = AuditSeal.objects.filter(last_seq__gt=start, last_seq__lt=first.first_seq).order_by("last_seq").first()
        if cut is not None:
            detail = f"the archive starts at id {first.first_seq}, but its purge starts at id {cut.first_seq}"
            self.problem(ProblemKind.INCOMPLETE, cut.first_seq, detail, 1)
        if last.last_seq <= purged and not boundaries.filter(through_seq=last.last_seq).exists():
            end = boundaries.filter(through_seq__gt=last.last_seq).order_by("through_seq").first()
            detail = f"the archive ends at id {last.last_seq}, but its purge goes on through id {end}"
            self.problem(ProblemKind.INCOMPLETE, last.last_seq + 1, detail, self.last_line + 1)
