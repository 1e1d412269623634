"""Reading the trail's new events by a durable cursor, never missing one that commits late.

Ids are allocated before their insert commits (apps.audit.group_commit): a lower id may
become visible after a higher one.  The cursor (``EvaluatorState`` "trail") keeps the last id
read and every id below it that was not visible yet (a gap), with when it was first missed;
each read asks for the new ids and again for the gaps.  A gap still missing after the seal
grace (which is above the longest audit insert) was a rolled-back insert and is dropped.  A
read twice is harmless: alerts fire once per dedup key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings

from apps.alerts.models import EvaluatorState
from apps.audit.models import AuditEvent

TRAIL = "trail"
BATCH = 5000
MAX_GAPS = 10_000  # an id jump larger than this (a restored backup?) is not tracked id by id
COLUMNS = (
    "id", "event_type", "occurred_at", "decision", "reason", "actor_username", "token_key_id", "upstream_id",
    "upstream_name", "method", "path", "request_id", "source_ip",
)  # fmt: skip

Row = dict[str, Any]


class Tail:
    def __init__(self, state: EvaluatorState) -> None:
        self.state = state
        self.gaps: dict[int, float] = {int(k): v for k, v in state.data.get("gaps", {}).items()}

    @classmethod
    def load(cls) -> Tail:
        """The cursor; on the very first run it starts at the newest event: alerts are about
        what happens from then on, not the history."""
        state = EvaluatorState.objects.filter(name=TRAIL).first()
        if state is None:
            top = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
            state = EvaluatorState(name=TRAIL, last_id=top)
        return cls(state)

    def read(self, now: datetime) -> list[Row]:
        """Late commits among the gaps, then up to ``BATCH`` new events, in id order each."""
        late: list[Row] = []
        if self.gaps:
            late = list(AuditEvent.objects.filter(id__in=list(self.gaps)).order_by("id").values(*COLUMNS))
        for row in late:
            del self.gaps[row["id"]]
        new = list(AuditEvent.objects.filter(id__gt=self.state.last_id).order_by("id").values(*COLUMNS)[:BATCH])
        expected = self.state.last_id + 1
        for row in new:
            for missing in range(max(expected, row["id"] - MAX_GAPS), row["id"]):
                self.gaps[missing] = now.timestamp()
            expected = row["id"] + 1
        if new:
            self.state.last_id = new[-1]["id"]
        self._forget_rolled_back(now)
        return late + new

    def _forget_rolled_back(self, now: datetime) -> None:
        oldest = now.timestamp() - settings.AUDIT_SEAL_GRACE_SECONDS
        self.gaps = {seq: seen for seq, seen in self.gaps.items() if seen >= oldest}
        if len(self.gaps) > MAX_GAPS:
            self.gaps = dict(sorted(self.gaps.items())[-MAX_GAPS:])

    def save(self) -> None:
        """After the events read were evaluated: a crash before it only reads them again."""
        self.state.data = {"gaps": {str(seq): seen for seq, seen in sorted(self.gaps.items())}}
        self.state.save()
