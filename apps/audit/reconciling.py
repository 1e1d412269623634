"""Closing attempts whose process died before it could record their outcome.

A gateway attempt is committed before forwarding and completed when the response
ends.  If the daemon process is killed in between, the attempt stays open; this marks
it ``interrupted`` so the trail is complete (attempts = outcomes) and the sealer can
move past it.

An attempt taken on this host is closed as soon as its process (``worker`` =
host/pid@start) is gone; the start time tells a reused pid from the original process.
While the process lives, the attempt is left open for ``older_than``, by default
``AUDIT_OPEN_ATTEMPT_BOUND_SECONDS`` (5 minutes): no exchange can last longer, because every
upstream's ``total_timeout`` (170 s at most) cuts it, and the last write to a slow client
is bounded by mod_wsgi's socket-timeout (45 s).  An attempt still open after that is
stuck, and would hold the trail's sealing back.  Outcomes still in this host's spools
(``apps.audit.spool``) are applied first: they are never overwritten by "interrupted".
An attempt taken on another host is left to that host's own reconciler, and closed here
after ``older_than`` too.

A WebSocket (``gateway.websocket``) legitimately stays open up to its upstream's maximum
duration (4 hours at most): its bound is ``AUDIT_OPEN_WEBSOCKET_BOUND_SECONDS``, that cap
plus a margin, so a live one is never closed, and the sealing waits for an open WebSocket
up to that long.  One whose relay process died is closed at once, like any other.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from apps.audit import spool
from apps.audit.choices import INTERRUPTED
from apps.audit.events import GATEWAY_WEBSOCKET
from apps.audit.models import AuditEvent


def process_start(pid: int | str) -> str | None:
    """When the process started (clock ticks after boot, from /proc), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name in parentheses may hold spaces


def _local(worker: str) -> bool:
    return worker.partition("/")[0] == socket.gethostname()


def _process_gone(worker: str) -> bool:
    """Whether the process of this host that took the attempt has exited."""
    pid, _, started = worker.partition("/")[2].partition("@")
    if not pid.isdigit():
        return False
    now_started = process_start(pid)
    return now_started is None or (bool(started) and started != now_started)


def reconcile(*, now: datetime | None = None, older_than: timedelta | None = None) -> list[int]:
    """Close the open attempts that can no longer complete; returns their ids."""
    now = now or timezone.now()
    bounds = {GATEWAY_WEBSOCKET: timedelta(seconds=settings.AUDIT_OPEN_WEBSOCKET_BOUND_SECONDS)}
    if older_than is not None:  # asked for: the same bound for every kind
        bounds = {}
    older_than = older_than or timedelta(seconds=settings.AUDIT_OPEN_ATTEMPT_BOUND_SECONDS)
    open_attempts = AuditEvent.objects.filter(completed_at__isnull=True).order_by("id")
    rows = open_attempts.values_list("id", "worker", "occurred_at", "event_type").iterator()
    stuck = [
        (event_id, occurred_at) for event_id, worker, occurred_at, event_type in rows
        if (_local(worker) and _process_gone(worker)) or occurred_at < now - bounds.get(event_type, older_than)
    ]  # fmt: skip
    # Only now the outcomes spooled on this host: a process seen gone above wrote its last
    # line before it died, so an attempt whose outcome was spooled is never called interrupted.
    spool.apply_segments(Path(settings.AUDIT_SPOOL_DIR), live_too=True)
    closed = []
    for event_id, occurred_at in stuck:
        duration = round((now - occurred_at).total_seconds() * 1000, 3)
        if AuditEvent.objects.record_outcome(event_id, completed_at=now, error=INTERRUPTED, duration_ms=duration):
            closed.append(event_id)
    return closed
