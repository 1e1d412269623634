from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from apps.siem.lines import Line
from apps.siem.sinks import DeliveryFailed


@pytest.fixture
def event(db):
    """An audit event with the given id, complete unless told otherwise, recorded ``age`` ago."""
    from apps.audit.models import AuditEvent

    def make(seq: int, *, complete: bool = True, age: float = 60, event_type: str = "gateway.request") -> AuditEvent:
        at = timezone.now() - timedelta(seconds=age)
        return AuditEvent.objects.create(
            id=seq, occurred_at=at, recorded_at=at, completed_at=at if complete else None, request_id=f"r{seq}",
            event_type=event_type, decision="allow", reason="allowed", status=200 if complete else None,
            method="GET", path=f"/p/{seq}", actor_username="alice", upstream_name="crm",
        )  # fmt: skip

    return make


def complete(seq: int) -> None:
    from apps.audit.models import AuditEvent

    assert AuditEvent.objects.record_outcome(seq, completed_at=timezone.now(), status=200)


class FakeSink:
    """Keeps what it is given; fails the next ``failures`` deliveries."""

    kind = "syslog"

    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.failures = 0
        self.closed = 0

    def deliver(self, lines: list[Line]) -> None:
        if self.failures:
            self.failures -= 1
            raise DeliveryFailed("receiver down")
        self.lines.extend(lines)

    def close(self) -> None:
        self.closed += 1

    def seqs(self, kind: str = "event") -> list[int]:
        return [line.seq for line in self.lines if line.kind == kind]


def now() -> datetime:
    return timezone.now()
