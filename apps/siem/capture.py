"""The receiver's check: a SIEM's capture of the stream holds every event each checkpoint covers,
and they re-chain to its head hash.

A capture is what a receiver wrote down: the webhook's NDJSON bodies, or the syslog messages one
a line (the JSON after the BOM of each RFC 5424 message), in any order, with the duplicates
at-least-once delivery makes.  Events are taken by id (a duplicate must be identical), each
checkpoint by ``last_seq``; then for each checkpoint, every id of ``first_seq..last_seq`` but its
``gaps`` must be there, and chained in id order from ``prev_hash`` with the sealer's own hash
(``apps.audit.sealing.chain`` over the row ``apps.audit.archives.sealed_row`` rebuilds from an
export line) they must end in ``head_hash``.  Consecutive checkpoints must link.  With the seal
key ring, each checkpoint's signature is checked too; without it (a receiver should not hold a
key that could sign), compare the checkpoints with the trail's own (``--database``) or with a
witness's checkpoint file.  Needs the settings (the sealed columns), not the database.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.audit import sealing
from apps.audit.archives import parse_line, sealed_row
from apps.siem.lines import CHECKPOINT
from apps.siem.syslog import BOM

_PAYLOAD = ("first_seq", "last_seq", "count", "gaps", "prev_hash", "head_hash", "sealed_at", "key_id")


@dataclass
class CaptureReport:
    lines_read: int = 0
    events: int = 0
    duplicates: int = 0
    checkpoints: int = 0
    events_verified: int = 0
    first_seq: int | None = None
    last_seq: int | None = None  # of the checkpoints verified
    unsealed: int = 0  # events after the last checkpoint: not verifiable yet
    signatures_checked: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.checkpoints > 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **{k: v for k, v in vars(self).items()}}


@dataclass
class Capture:
    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    checkpoints: dict[int, dict[str, Any]] = field(default_factory=dict)


def read(paths: Iterable[Path], report: CaptureReport) -> Capture:
    capture = Capture()
    for path in paths:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                if raw.strip():
                    report.lines_read += 1
                    _take(capture, report, json_of(raw), f"{path.name}:{number}")
    report.events, report.checkpoints = len(capture.events), len(capture.checkpoints)
    return capture


def json_of(raw: bytes) -> bytes:
    """The JSON of a captured line: all of an NDJSON line, the MSG after the BOM of a syslog one."""
    _, bom, after = raw.partition(BOM)
    return (after if bom else raw).strip()


def _take(capture: Capture, report: CaptureReport, raw: bytes, where: str) -> None:
    try:
        line = parse_line(raw)
    except (ValueError, RecursionError):
        report.problems.append(f"{where}: not JSON")
        return
    if not isinstance(line, dict):
        report.problems.append(f"{where}: not an object")
        return
    if line.get("type") == CHECKPOINT:
        _keep(capture.checkpoints, line.get("last_seq"), line, report, where, "checkpoint")
    else:
        _keep(capture.events, line.get("id"), line, report, where, "event")


def _keep(seen: dict[int, dict[str, Any]], key: Any, line: dict[str, Any], report: CaptureReport, where: str,
          what: str) -> None:  # fmt: skip
    if type(key) is not int:
        report.problems.append(f"{where}: not an event or checkpoint of the stream")
    elif key not in seen:
        seen[key] = line
    elif seen[key] == line:
        report.duplicates += 1
    else:
        report.problems.append(f"{where}: {what} {key} arrived twice with different contents")


def verify_capture(paths: Iterable[Path], *, keys: Mapping[str, str] | None = None) -> CaptureReport:
    report = CaptureReport(signatures_checked=bool(keys))
    capture = read(paths, report)
    previous: dict[str, Any] | None = None
    for last_seq in sorted(capture.checkpoints):
        checkpoint = capture.checkpoints[last_seq]
        follows = previous is not None and previous["last_seq"] + 1 == checkpoint["first_seq"]
        if follows and previous is not None and checkpoint["prev_hash"] != previous["head_hash"]:
            report.problems.append(f"checkpoint {last_seq} does not follow checkpoint {previous['last_seq']}")
        if keys:
            _check_signature(checkpoint, keys, report)
        _rechain(checkpoint, capture.events, report)
        previous = checkpoint
    covered = max(capture.checkpoints, default=0)
    report.unsealed = sum(1 for seq in capture.events if seq > covered)
    if not capture.checkpoints:
        report.problems.append("the capture holds no checkpoint: nothing to verify its events against")
    return report


def _check_signature(checkpoint: dict[str, Any], keys: Mapping[str, str], report: CaptureReport) -> None:
    key = keys.get(checkpoint.get("key_id", ""))
    payload = {name: checkpoint.get(name) for name in _PAYLOAD}
    if key is None or not hmac.compare_digest(
        str(checkpoint.get("signature", "")), sealing.checkpoint_signature(payload, key)
    ):
        report.problems.append(f"checkpoint {checkpoint['last_seq']}: bad signature (key id {payload['key_id']!r})")


def _rechain(checkpoint: dict[str, Any], events: dict[int, dict[str, Any]], report: CaptureReport) -> None:
    first, last, gaps = checkpoint["first_seq"], checkpoint["last_seq"], set(checkpoint["gaps"])
    running, missing = checkpoint["prev_hash"], []
    for seq in range(first, last + 1):
        if seq in gaps:
            if seq in events:
                report.problems.append(f"event {seq} arrived, but checkpoint {last} records it as never committed")
            continue
        line = events.get(seq)
        if line is None:
            missing.append(seq)
            continue
        try:
            running = sealing.chain(running, sealed_row(line))
        except (KeyError, TypeError, ValueError) as error:
            report.problems.append(f"event {seq} is not an event line: {error!r}")
            return
        report.events_verified += 1
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        report.problems.append(f"checkpoint {last}: {len(missing)} events never arrived: {shown}")
    elif running != checkpoint["head_hash"]:
        report.problems.append(f"checkpoint {last}: the events {first}..{last} do not re-chain to its head hash")
    report.first_seq = first if report.first_seq is None else min(report.first_seq, first)
    report.last_seq = last if report.last_seq is None else max(report.last_seq, last)
