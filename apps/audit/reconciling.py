"""Closing attempts whose process died before it could record their outcome.

A gateway attempt is committed before forwarding and completed when the response
ends.  If the daemon process is killed in between, the attempt stays open; this marks
it ``interrupted`` so the trail is complete (attempts = outcomes) and the sealer can
move past it.  An attempt is closed when the process that took it (``worker`` =
host/pid) is gone from this host, or when it is older than ``older_than`` wherever it ran.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from django.utils import timezone

from apps.audit.models import AuditEvent

INTERRUPTED = "interrupted"


def _process_gone(worker: str) -> bool:
    host, _, pid = worker.partition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


def reconcile(*, now: datetime | None = None, older_than: timedelta = timedelta(minutes=15)) -> list[int]:
    """Close the open attempts that can no longer complete; returns their ids."""
    now = now or timezone.now()
    closed = []
    open_attempts = AuditEvent.objects.filter(completed_at__isnull=True).order_by("id")
    for event_id, worker, occurred_at in open_attempts.values_list("id", "worker", "occurred_at").iterator():
        if _process_gone(worker) or occurred_at < now - older_than:
            duration = round((now - occurred_at).total_seconds() * 1000, 3)
            if AuditEvent.objects.record_outcome(event_id, completed_at=now, error=INTERRUPTED, duration_ms=duration):
                closed.append(event_id)
    return closed
