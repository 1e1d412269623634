"""Every web host keeps its own copy of the signed checkpoints: a witness of the trail.

Only the host whose sealer won the lock appends a checkpoint to its file
(``apps.audit.sealing``).  ``witness()``, run by cron on every web host every minute
(``manage.py audit_witness``), brings this host's file up to date with the database:

1. It compares every line the file has with the database's checkpoint of the same
   ``last_seq``: a line the database lacks, or holds differently (rewritten, re-signed), is a
   difference; then nothing is written, and the caller exits 1.  A checkpoint the database
   has between two lines of the file (a line an older run never wrote) is only noted: the
   file is behind there, and ``audit_verify`` checks that checkpoint in the database.
2. It appends every newer checkpoint in order, each only after its signature holds under
   the key ring and its ``prev_hash`` is the file's last ``head_hash`` (the genesis for the
   first).  The first that fails stops the copy: the ones before it, which checked out, stay.

The file is held under the exclusive lock the sealer takes too (``apps.audit.checkpoint_file``)
for the whole run, so the two never interleave or write a checkpoint twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from apps.audit import checkpoint_file
from apps.audit.models import AuditSeal
from apps.audit.sealing import GENESIS, Report, checkpoint_line, verify_checkpoint

_PAGE = 1000


@dataclass
class Witnessed:
    copied: list[AuditSeal] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    behind: list[int] = field(default_factory=list)  # last_seq of checkpoints between lines the file lacks

    @property
    def ok(self) -> bool:
        return not self.problems


def witness(path: Path, keys: Mapping[str, str]) -> Witnessed:
    """Compare ``path`` with the database, then copy the checkpoints it lacks (see the module)."""
    result = Witnessed()
    with checkpoint_file.locked(path) as handle:
        last = _compare(checkpoint_file.lines(handle), _checkpoints(after=0), result)
        if result.ok:
            _copy_newer(handle, last, keys, result)
    return result


def _checkpoints(*, after: int) -> Iterator[AuditSeal]:
    """The database's checkpoints with ``last_seq > after``, in order, a page at a time."""
    while page := list(AuditSeal.objects.filter(last_seq__gt=after).order_by("last_seq")[:_PAGE]):
        yield from page
        after = page[-1].last_seq


def _compare(lines: Iterator[checkpoint_file.Line], in_db: Iterator[AuditSeal], result: Witnessed) -> dict | None:
    """Walk the file and the database side by side (both in ``last_seq`` order); returns the
    file's last line."""
    last, seal = None, next(in_db, None)
    for line in lines:
        while seal is not None and seal.last_seq < line["last_seq"]:
            result.behind.append(seal.last_seq)
            seal = next(in_db, None)
        if seal is None or seal.last_seq != line["last_seq"]:
            result.problems.append(
                f"the checkpoint of {line['first_seq']}..{line['last_seq']} is in the file but not in the database"
            )
        else:
            if difference := _difference(seal, line):
                result.problems.append(difference)
            seal = next(in_db, None)
        last = line
    return last


def _difference(seal: AuditSeal, line: checkpoint_file.Line) -> str | None:
    inside = checkpoint_line(seal)
    changed = sorted(name for name in inside.keys() | line.keys() if inside.get(name) != line.get(name))
    if not changed:
        return None
    return f"the checkpoint of {seal.first_seq}..{seal.last_seq} differs from the file in: {', '.join(changed)}"


def _copy_newer(handle: IO[str], last: dict | None, keys: Mapping[str, str], result: Witnessed) -> None:
    previous = last["head_hash"] if last else GENESIS
    for seal in _checkpoints(after=last["last_seq"] if last else 0):
        report = Report()
        verify_checkpoint(seal, previous, keys, report)
        if not report.ok:
            result.problems.extend(f"not copied: {problem.kind}: {problem.detail}" for problem in report.problems)
            return
        checkpoint_file.append(handle, checkpoint_line(seal))
        result.copied.append(seal)
        previous = seal.head_hash
