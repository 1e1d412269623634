"""Tamper evidence: a hash chain over the audit events, sealed into signed checkpoints.

Events are chained in ``seq`` (= primary key) order::

    hash_n = SHA-256(hash_{n-1} || canonical_bytes(event_n)),   hash_0 = 32 zero bytes

``seal()`` extends the chain over events written longer ago than the grace window
(an event with a lower id may commit after a higher one; once the window has passed,
a missing id is a rolled-back insert and is recorded in the checkpoint's ``gaps``).
Each call writes the per-event hashes, one ``AuditSeal`` checkpoint signed with
HMAC-SHA256 under the current key of a ring kept outside the database (the checkpoint
records the key's id), and appends the checkpoint to a file outside the database.

``verify()`` recomputes everything.  Inside the database it finds edited, deleted,
inserted and swapped events (the first bad seq) and forks between checkpoints.  An
attacker who rewrites events *and* recomputes every hash is caught by the signatures
(each checked with the key its id names) and by the external checkpoint file, which also
catches a truncated tail.
Purged segments are checked here through their checkpoints only; their archives are
re-chained to those checkpoints by ``apps.audit.archives``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.audit import checkpoint_file
from apps.audit.choices import ProblemKind
from apps.audit.evidence import verification as evidence
from apps.audit.models import AuditEvent, AuditEventHash, AuditSeal
from apps.audit.retention import purged_through
from apps.core import signing
from apps.core.mariadb.locks import NamedLock

GENESIS = "0" * 64
# What is sealed of an event: every column but ``actor_id`` (set to NULL when a user is
# deleted; ``actor_username`` keeps who it was), in table order, read raw from the database
# (what is stored is what is sealed).  Changing this list needs a new ``schema_version``.
SEALED_FIELDS = tuple(f for f in AuditEvent._meta.concrete_fields if f.attname != "actor_id")
ID, COMPLETED, RECORDED, VERSION, EVIDENCE = (
    next(i for i, f in enumerate(SEALED_FIELDS) if f.attname == name)
    for name in ("id", "completed_at", "recorded_at", "schema_version", "evidence")
)
# Schema version 2 appended these columns (the causal chain, WebSocket close codes), and
# version 3 the evidence of the exchange's bodies (apps.audit.evidence).  A row of an older
# version is sealed without the columns its version lacks, as it always was, while they hold
# their empty values; a value written into one of them later makes the row hash differently.
_V2_COLUMNS = ("trace_id", "parent_event_id", "close_code")
_V3_COLUMNS = ("evidence",)
V2_WIDTH = len(SEALED_FIELDS) - len(_V3_COLUMNS)
V1_WIDTH = V2_WIDTH - len(_V2_COLUMNS)
V2_EMPTY = (None,)
V1_EMPTY = ("", None, None, *V2_EMPTY)  # what a version 1 row holds in every later column
assert tuple(f.attname for f in SEALED_FIELDS[V1_WIDTH:]) == _V2_COLUMNS + _V3_COLUMNS


def _column(field: Any) -> str:
    """The column as sealed.  MariaDB formats datetimes exactly as ``datetime.isoformat()``
    would (naive UTC, the fraction only when non-zero): parsing them into Python objects
    was the slowest part of verification."""
    column = connection.ops.quote_name(field.column)
    if field.get_internal_type() != "DateTimeField":
        return column
    return (
        f"IF(MICROSECOND({column}) = 0, DATE_FORMAT({column}, '%%Y-%%m-%%dT%%H:%%i:%%s'),"
        f" DATE_FORMAT({column}, '%%Y-%%m-%%dT%%H:%%i:%%s.%%f'))"
    )


_SELECT = "SELECT {} FROM {} WHERE id >= %s AND id <= %s ORDER BY id LIMIT %s".format(  # noqa: S608 - our own column names
    ", ".join(_column(f) for f in SEALED_FIELDS), AuditEvent._meta.db_table
)
_BATCH = 5000
_LAST = 2**63 - 1
# One sealer at a time, across processes and hosts.
SEALER_LOCK = NamedLock("sealer")

Row = tuple[Any, ...]


def _plain(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


# The definition: what ``json.dumps(row, ensure_ascii=False, separators=(",", ":"),
# default=_plain)`` returns, UTF-8 encoded.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_plain)
_FLOATS = [i for i, f in enumerate(SEALED_FIELDS) if f.get_internal_type() == "FloatField"]


def canonical_bytes(row: Row) -> bytes:
    """A compact JSON array of the sealed columns; datetimes (UTC, as stored) in ISO-8601.

    orjson writes the same bytes as the json module five times faster, except for floats
    that Python writes with an exponent (1e-05, orjson 0.00001) or not at all (nan): rows
    with such a value take the json module (tests/audit/test_sealing.py holds them equal)."""
    version = row[VERSION]
    if version == 2 and row[V2_WIDTH:] == V2_EMPTY:
        row = row[:V2_WIDTH]
    elif version == 1 and row[V1_WIDTH:] == V1_EMPTY:
        row = row[:V1_WIDTH]
    for i in _FLOATS:
        value = row[i]
        if value and not 1e-4 <= abs(value) < 1e16:
            return _ENCODER.encode(row).encode()
    return orjson.dumps(row, default=_plain, option=orjson.OPT_PASSTHROUGH_DATETIME)


def chain(previous: str, row: Row) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + canonical_bytes(row)).hexdigest()


def _events(first: int, last: int | None = None) -> Iterator[Row]:
    """Raw event rows with ``first <= id (<= last)`` in id order, in batches (constant memory)."""
    cursor_at, last = first, _LAST if last is None else last
    with connection.cursor() as cursor:
        while True:
            cursor.execute(_SELECT, [cursor_at, last, _BATCH])
            rows = cursor.fetchall()
            yield from rows
            if len(rows) < _BATCH:
                return
            cursor_at = rows[-1][ID] + 1


# --- checkpoints -----------------------------------------------------------------------


def checkpoint_payload(seal: AuditSeal) -> dict[str, Any]:
    return {
        "first_seq": seal.first_seq,
        "last_seq": seal.last_seq,
        "count": seal.count,
        "gaps": seal.gaps,
        "prev_hash": seal.prev_hash,
        "head_hash": seal.head_hash,
        "sealed_at": seal.sealed_at.astimezone(UTC).isoformat(),
        "key_id": seal.key_id,
    }


def checkpoint_signature(payload: dict[str, Any], key: str) -> str:
    return signing.sign(key, json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


def _signing_key() -> tuple[str, str]:
    """The id and secret of the key new checkpoints are signed with; ("", "") with no key
    configured: the checkpoint is then unsigned."""
    keys = settings.AUDIT_SEAL_KEYS
    if not keys:
        return "", ""
    return settings.AUDIT_SEAL_KEY_ID, keys[settings.AUDIT_SEAL_KEY_ID]


def checkpoint_line(seal: AuditSeal) -> dict[str, Any]:
    """The checkpoint as the external file holds it: its payload and signature."""
    return {**checkpoint_payload(seal), "signature": seal.signature}


def _append_checkpoint(seal: AuditSeal, path: str) -> None:
    if not path:
        return
    with checkpoint_file.locked(Path(path)) as handle:
        last = checkpoint_file.last_line(handle)
        # The witness of this host (apps.audit.witnessing) may have copied it from the
        # database between the commit above and now: never a second line for it.
        if last is None or last["last_seq"] < seal.last_seq:
            checkpoint_file.append(handle, checkpoint_line(seal))


# --- sealing ---------------------------------------------------------------------------


def seal(*, now: datetime | None = None, grace: timedelta | None = None, limit: int = 100_000) -> AuditSeal | None:
    """Seal the events that are old enough; returns the new checkpoint, or None if nothing to seal."""
    now = now or timezone.now()
    cutoff = now - (grace if grace is not None else timedelta(seconds=settings.AUDIT_SEAL_GRACE_SECONDS))
    with transaction.atomic(), SEALER_LOCK.holding(wait=10) as taken:
        if not taken:
            raise RuntimeError("Another sealer is running.")
        last = AuditSeal.objects.order_by("-last_seq").first()
        previous = last.head_hash if last else GENESIS
        # The chain starts at the first event ever written (ids before it never existed).
        expected = (
            last.last_seq + 1 if last else (AuditEvent.objects.order_by("id").values_list("id", flat=True).first() or 1)
        )
        hashes: list[AuditEventHash] = []
        gaps: list[int] = []
        first = expected
        # Sealed rows hold naive UTC datetimes as ISO strings, which compare like the times.
        stored_cutoff = cutoff.astimezone(UTC).replace(tzinfo=None).isoformat()
        for row in _events(expected):
            # An attempt still waiting for its outcome (or completed within the grace window)
            # stops the chain here: nothing after it is sealed before it.
            completed = row[COMPLETED]
            if completed is None or completed > stored_cutoff or row[RECORDED] > stored_cutoff or len(hashes) >= limit:
                break
            gaps.extend(range(expected, row[ID]))
            previous = chain(previous, row)
            hashes.append(AuditEventHash(seq=row[ID], hash=previous))
            expected = row[ID] + 1
        if not hashes:
            return None
        key_id, key = _signing_key()
        checkpoint = AuditSeal(
            first_seq=first, last_seq=hashes[-1].seq, count=len(hashes), gaps=gaps,
            prev_hash=last.head_hash if last else GENESIS, head_hash=previous, sealed_at=now,
            key_id=key_id,
        )  # fmt: skip
        if key:
            checkpoint.signature = checkpoint_signature(checkpoint_payload(checkpoint), key)
        # Inserts only: the app's database user may not update or delete audit tables.
        AuditEventHash.objects.bulk_create(hashes, batch_size=_BATCH)
        checkpoint.save()
    _append_checkpoint(checkpoint, settings.AUDIT_CHECKPOINT_FILE)
    return checkpoint


# --- verification ----------------------------------------------------------------------


@dataclass
class Problem:
    # altered | deleted | inserted | fork | bad_signature | unknown_key | checkpoint_missing | checkpoint_mismatch
    # | evidence_missing | evidence_mismatch
    kind: str
    seq: int | None
    detail: str


@dataclass
class Report:
    events_checked: int = 0
    segments_checked: int = 0
    unsealed_tail: int = 0
    signatures_checked: bool = False
    checkpoint_file_checked: bool = False
    problems: list[Problem] = field(default_factory=list)
    # The events re-hashed: whole segments from ``from_seq`` through ``through_seq`` (None:
    # none), and whether that reached the last sealed segment (a bounded walk may stop early).
    from_seq: int | None = None
    through_seq: int | None = None
    complete: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "first_bad_seq": self.first_bad_seq,
            "events_checked": self.events_checked,
            "segments_checked": self.segments_checked,
            "unsealed_tail": self.unsealed_tail,
            "signatures_checked": self.signatures_checked,
            "checkpoint_file_checked": self.checkpoint_file_checked,
            "from_seq": self.from_seq,
            "through_seq": self.through_seq,
            "complete": self.complete,
            "problems": [vars(p) for p in self.problems],
        }


def verify(
    *,
    keys: Mapping[str, str] | None = None,
    checkpoint_file: str = "",
    progress: Callable[[int], None] | None = None,
    from_seq: int = 1,
    max_events: int | None = None,
) -> Report:
    """Check the trail; with ``keys`` (the seal key ring: key id -> secret), the signatures too.

    Every checkpoint is always checked against the one before it (and its signature): that
    costs a row per segment.  The events are re-hashed from the segment that holds
    ``from_seq`` on, a whole segment at a time (each re-chains from its own checkpoint's
    ``prev_hash``, which the link check ties to the segment before).  With ``max_events`` the
    walk stops after the segment that reaches it: ``report.complete`` is then False and the
    next walk starts after ``report.through_seq``.  Bounded walks are what a web request may
    do (the whole trail takes a minute and more at ten million events); the host's
    ``audit_verify`` walks it all.
    """
    keys = keys or {}
    report = Report(signatures_checked=bool(keys))
    previous = GENESIS
    seals = list(AuditSeal.objects.order_by("first_seq"))
    purged = purged_through()
    for checkpoint in seals:
        if checkpoint.last_seq <= purged or checkpoint.last_seq < from_seq:
            # Exported and deleted (its checkpoint still links and is signed), or before the walk.
            verify_checkpoint(checkpoint, previous, keys, report)
        elif max_events is not None and report.events_checked >= max_events:
            verify_checkpoint(checkpoint, previous, keys, report)
            report.complete = False
        else:
            _verify_segment(checkpoint, previous, keys, report, progress)
            if report.from_seq is None:
                report.from_seq = checkpoint.first_seq
            report.through_seq = checkpoint.last_seq
        previous = checkpoint.head_hash
    last_sealed = seals[-1].last_seq if seals else 0
    report.unsealed_tail = AuditEvent.objects.filter(id__gt=last_sealed).count()
    if checkpoint_file:
        _verify_checkpoint_file(Path(checkpoint_file), seals, report)
    return report


def verify_checkpoint(checkpoint: AuditSeal, previous: str, keys: Mapping[str, str], report: Report) -> None:
    """The checkpoint follows ``previous`` (the head hash before it) and, with ``keys``, its
    signature holds under the key its ``key_id`` names."""
    report.segments_checked += 1
    if checkpoint.prev_hash != previous:
        report.problems.append(
            Problem(ProblemKind.FORK, checkpoint.first_seq, f"segment {checkpoint.pk} does not follow")
        )
    if keys:
        _verify_signature(checkpoint, keys, report)


def _verify_signature(checkpoint: AuditSeal, keys: Mapping[str, str], report: Report) -> None:
    key = keys.get(checkpoint.key_id)
    # An unsigned checkpoint (no key id) cannot verify under any key: a bad signature, as
    # before keys had ids.  A named key that is not in the ring cannot tell a forgery from
    # a checkpoint whose key was dropped from the ring: it has a problem of its own.
    if key is None and checkpoint.key_id:
        detail = f"segment {checkpoint.pk} is signed with key id {checkpoint.key_id!r}, which is not in the key ring"
        report.problems.append(Problem(ProblemKind.UNKNOWN_KEY, checkpoint.first_seq, detail))
    elif key is None or not hmac.compare_digest(
        checkpoint.signature, checkpoint_signature(checkpoint_payload(checkpoint), key)
    ):
        report.problems.append(
            Problem(ProblemKind.BAD_SIGNATURE, checkpoint.first_seq, f"segment {checkpoint.pk} signature")
        )


def _verify_segment(
    checkpoint: AuditSeal,
    previous: str,
    keys: Mapping[str, str],
    report: Report,
    progress: Callable[[int], None] | None,
) -> None:
    verify_checkpoint(checkpoint, previous, keys, report)
    problems = report.problems
    stored = dict(
        AuditEventHash.objects.filter(seq__gte=checkpoint.first_seq, seq__lte=checkpoint.last_seq).values_list(
            "seq", "hash"
        )
    )
    gaps = set(checkpoint.gaps)
    expected = checkpoint.first_seq
    running = checkpoint.prev_hash
    captured: list[evidence.Named] = []
    for row in _events(checkpoint.first_seq, checkpoint.last_seq):
        seq = row[ID]
        if row[EVIDENCE] is not None:
            captured.extend(evidence.named_in(seq, row[EVIDENCE]))
            if len(captured) >= _BATCH:
                _verify_evidence(captured, problems)
                captured = []
        for missing in range(expected, seq):
            if missing not in gaps:
                problems.append(Problem(ProblemKind.DELETED, missing, "a sealed event is missing"))
        if seq in gaps or seq not in stored:
            problems.append(
                Problem(ProblemKind.INSERTED, seq, "an event that was never sealed appears in a sealed range")
            )
        else:
            running = chain(running, row)
            if running != stored[seq]:
                problems.append(Problem(ProblemKind.ALTERED, seq, "the event or its chain hash was changed"))
                running = stored[seq]  # resynchronise to report later problems independently
        expected = seq + 1
        report.events_checked += 1
        if progress and report.events_checked % 1000 == 0:
            progress(1000)
    for missing in range(expected, checkpoint.last_seq + 1):
        if missing not in gaps:
            problems.append(Problem(ProblemKind.DELETED, missing, "a sealed event is missing"))
    _verify_evidence(captured, problems)
    if running != checkpoint.head_hash:
        problems.append(
            Problem(ProblemKind.ALTERED, checkpoint.last_seq, f"segment {checkpoint.pk} does not end in its head hash")
        )


def _verify_evidence(captured: list[evidence.Named], problems: list[Problem]) -> None:
    """Each body these sealed events name is stored, and its content hashes to the sealed digest."""
    if not captured:
        return
    for state, body in evidence.problems(captured):
        if state == evidence.MISSING:
            kind, detail = ProblemKind.EVIDENCE_MISSING, f"the captured {body.direction} body is not stored"
        else:
            kind, detail = ProblemKind.EVIDENCE_MISMATCH, f"the captured {body.direction} body was changed"
        problems.append(Problem(kind, body.seq, detail))


def _verify_checkpoint_file(path: Path, seals: list[AuditSeal], report: Report) -> None:
    report.checkpoint_file_checked = True
    if not path.is_file():
        if seals:  # nothing sealed yet is the only reason for the file not to exist
            report.problems.append(
                Problem(ProblemKind.CHECKPOINT_MISSING, seals[0].first_seq, f"{path} does not exist")
            )
        return
    # A file that lacks the newest checkpoints is behind, not wrong: a witness host copies
    # them once a minute (apps.audit.witnessing).  A line the database lacks or holds
    # differently is a problem.
    in_db = {seal.last_seq: seal for seal in seals}
    for outside in checkpoint_file.read(path):
        # A sealer may have run since ``seals`` was read: it commits a checkpoint before it
        # appends it to the file, so a line the list lacks must be looked for again, now.
        seal = in_db.get(outside["last_seq"]) or AuditSeal.objects.filter(last_seq=outside["last_seq"]).first()
        if seal is None:
            detail = f"the segment ending at {outside['last_seq']} is in {path.name} but not in the database"
            report.problems.append(Problem(ProblemKind.CHECKPOINT_MISSING, outside["first_seq"], detail))
            continue
        inside = checkpoint_line(seal)
        if any(
            inside[k] != outside.get(k)
            for k in ("first_seq", "last_seq", "count", "head_hash", "prev_hash", "signature")
        ):
            detail = f"segment {seal.pk} differs from {path.name}"
            report.problems.append(Problem(ProblemKind.CHECKPOINT_MISMATCH, seal.first_seq, detail))
