"""What a sink sends: one JSON line per event, and one per checkpoint.

An event's line is exactly its line in the trail's NDJSON export (``apps.audit.exporting``:
every column raw, datetimes to the microsecond), so a receiver's capture re-chains to the
checkpoints with the archive check's own code (``apps.siem.capture``).  A checkpoint's line is
its line in the external checkpoint file (``sealing.checkpoint_line``) with ``"type":
"checkpoint"`` first; no event line has a ``type`` key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from apps.audit import sealing
from apps.audit.exporting import ndjson_lines
from apps.audit.models import AuditEvent, AuditSeal

EVENT, CHECKPOINT = "event", "checkpoint"


@dataclass(frozen=True)
class Line:
    kind: str  # EVENT or CHECKPOINT
    seq: int  # the event's id, or the checkpoint's last_seq
    body: bytes  # one JSON object, no newline
    fields: dict[str, Any]  # the same, parsed

    @property
    def event_type(self) -> str:
        return CHECKPOINT if self.kind == CHECKPOINT else str(self.fields.get("event_type", ""))


def event_lines(ids: list[int]) -> list[Line]:
    """The export lines of these events, in id order (ids that do not exist are left out)."""
    if not ids:
        return []
    exported = b"".join(ndjson_lines(AuditEvent.objects.filter(id__in=ids)))
    # orjson escapes every control character inside strings: a newline only ends a line.
    return [_event(body) for body in exported.split(b"\n") if body]


def _event(body: bytes) -> Line:
    fields = orjson.loads(body)
    return Line(EVENT, fields["id"], body, fields)


def checkpoint_line(seal: AuditSeal) -> Line:
    fields = {"type": CHECKPOINT, **sealing.checkpoint_line(seal)}
    return Line(CHECKPOINT, seal.last_seq, orjson.dumps(fields), fields)
