"""Verifications of the trail are themselves in the trail: one ``audit.verified`` event each.

``object_id`` says what was walked: ``full`` (the host's ``audit_verify``: every sealed
segment, with the seal keys and the external checkpoint file where it has them) or ``range``
(a bounded walk, such as ``GET /api/audit/verify``); ``object_repr`` the seqs re-hashed
(``seq 1..1008957``); ``reason`` ``ok`` or ``not_intact``.  Being sealed like every event, a
forged "all is well" is as visible as any other edit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from apps.audit import events
from apps.audit.acting import Acting
from apps.audit.models import AuditEvent
from apps.audit.sealing import Report
from apps.audit.signals import verification_failed

FULL, RANGE = "full", "range"
OBJECT_TYPE = "audit.trail"
_COVERED = re.compile(r"seq (\d+)\.\.(\d+)")


@dataclass(frozen=True)
class Verification:
    event_id: int
    at: datetime
    ok: bool
    by: str
    from_seq: int | None
    through_seq: int | None

    def as_dict(self) -> dict[str, object]:
        return {"event_id": self.event_id, "at": self.at.isoformat(), "ok": self.ok, "by": self.by,
                "from_seq": self.from_seq, "through_seq": self.through_seq}  # fmt: skip


def record(report: Report, *, acting: Acting, scope: str) -> list[tuple[object, Exception]]:
    """Put the walk in the trail and, if it found problems, tell the listeners of
    ``verification_failed`` (the alerts app).  Returns the receivers that failed with their
    errors, for the caller to report: the verdict stands either way."""
    covered = f"seq {report.from_seq}..{report.through_seq}" if report.through_seq is not None else "no sealed events"
    events.record(events.AUDIT_VERIFIED, acting=acting, reason="ok" if report.ok else "not_intact",
                  object_type=OBJECT_TYPE, object_id=scope, object_repr=covered)  # fmt: skip
    if report.ok:
        return []
    sent = verification_failed.send_robust(sender=Report, report=report)
    return [(receiver, result) for receiver, result in sent if isinstance(result, Exception)]


def last_full() -> Verification | None:
    """The newest verification of the whole trail (``audit_verify`` on a host), if any."""
    # (event_type, occurred_at) is an index: this reads back from the newest audit.verified.
    event = (
        AuditEvent.objects.filter(event_type=events.AUDIT_VERIFIED, object_type=OBJECT_TYPE, object_id=FULL)
        .order_by("-occurred_at", "-id")
        .first()
    )
    if event is None:
        return None
    covered = _COVERED.fullmatch(event.object_repr)
    return Verification(
        event_id=event.pk,
        at=event.occurred_at,
        ok=event.reason == "ok",
        by=event.actor_username,
        from_seq=int(covered[1]) if covered else None,
        through_seq=int(covered[2]) if covered else None,
    )
