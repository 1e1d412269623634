"""Recording gateway attempts, in two phases, fail-closed.

1. ``begin()`` commits the attempt (who, what, where, the decision) *before* the request
   is forwarded.  If it cannot be written the gateway answers 503 and does not contact the
   upstream, unless the upstream is ``fail_open`` (then a loud error is logged).
2. ``finish()`` makes the outcome (status, bytes, SHA-256 of both bodies, timings) durable
   once, when the response is complete or the client has gone (the WSGI ``close()``): it
   appends it to this process's outcome spool (``apps.audit.spool``), which a drainer thread
   commits into MariaDB, many outcomes per transaction.  The request's thread is released
   only after the append, so the outcome survives a crash of the process or of Apache.

A refusal has nothing to forward: ``deny()`` writes it complete in one insert.  Attempts
whose process died before phase 2 are closed as ``interrupted`` by ``audit_reconcile``,
after it has applied every spooled outcome.  Outcomes spooled while the database is away
wait on disk until it is back.  Audit writes run in autocommit, never inside a transaction
of the request.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from apps.audit.choices import Decision
from apps.audit.events import GATEWAY_DENIED, GATEWAY_REQUEST, GATEWAY_WEBSOCKET
from apps.audit.masking import mask_query
from apps.audit.models import AuditEvent
from apps.audit.reconciling import process_start
from apps.audit.spool import Spool

if TYPE_CHECKING:
    from apps.audit.evidence.capture import Capture

_MAX_TEXT = 2000
# Daemon mode initialises Python in each daemon process (WSGIRestrictEmbedded), so the
# pid read at import is the pid of the process that handles the requests.  Its start time
# tells the reconciler a reused pid from this process.
WORKER = f"{socket.gethostname()}/{os.getpid()}@{process_start(os.getpid())}"
logger = logging.getLogger(__name__)
_spool: Spool | None = None
_spool_lock = threading.Lock()


def outcome_spool() -> Spool:
    """This process's outcome spool, made on first use (after mod_wsgi or gunicorn forked)."""
    global _spool
    if _spool is not None:  # every outcome asks: no lock once it exists
        return _spool
    with _spool_lock:
        if _spool is None:
            tag = f"{os.getpid()}.{process_start(os.getpid())}"
            threaded = settings.AUDIT_SPOOL_DRAIN == "thread"
            _spool = Spool(Path(settings.AUDIT_SPOOL_DIR), tag, threaded=threaded,
                           linger=settings.AUDIT_SPOOL_LINGER_SECONDS)  # fmt: skip
            atexit.register(_spool.close)
        return _spool


@dataclass(frozen=True)
class Attempt:
    """What was asked and what was decided: phase 1, written before anything is forwarded."""

    request_id: str
    method: str
    path: str
    query: str = ""
    source_ip: str | None = None
    peer_ip: str | None = None
    forwarded_chain: str = ""
    host: str = ""
    user_agent: str = ""
    occurred_at: datetime = field(default_factory=timezone.now)
    actor_id: int | None = None
    actor_username: str = ""
    actor_groups: tuple[str, ...] = ()
    auth_method: str = ""
    token_key_id: str = ""
    upstream_id: int | None = None
    upstream_name: str = ""
    decision: str = Decision.DENY
    reason: str = ""
    rule_id: int | None = None
    injected_credential: str = ""
    # The causal chain: the W3C trace id, and the event of the request whose upstream made
    # this one (verified by the gateway, apps.gateway.tracing).
    trace_id: str = ""
    parent_event_id: int | None = None
    # A WebSocket connection (apps.gateway.wsrelay): an allowed one is a ``gateway.websocket`` event.
    websocket: bool = False

    def event_type(self) -> str:
        if self.decision != Decision.ALLOW:
            return GATEWAY_DENIED
        return GATEWAY_WEBSOCKET if self.websocket else GATEWAY_REQUEST

    def fields(self) -> dict[str, Any]:
        return {
            "event_type": self.event_type(),
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path[:_MAX_TEXT],
            "query": mask_query(self.query)[:_MAX_TEXT],
            "source_ip": self.source_ip,
            "peer_ip": self.peer_ip,
            "forwarded_chain": self.forwarded_chain[:500],
            "host": self.host[:255],
            "user_agent": self.user_agent[:255],
            "occurred_at": self.occurred_at,
            "actor_id": self.actor_id,
            "actor_username": self.actor_username,
            "actor_groups": list(self.actor_groups),
            "auth_method": self.auth_method,
            "token_key_id": self.token_key_id,
            "upstream_id": self.upstream_id,
            "upstream_name": self.upstream_name,
            "decision": self.decision,
            "reason": self.reason,
            "rule_id": self.rule_id,
            "injected_credential": self.injected_credential,
            "trace_id": self.trace_id,
            "parent_event_id": self.parent_event_id,
            "worker": WORKER,
        }


class BodyCount:
    """Bytes and SHA-256 of a body as it streams; only the relay adds to it."""

    def __init__(self) -> None:
        self.bytes = 0
        self._digest = hashlib.sha256()

    def add(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        self._digest.update(chunk)

    def sha256(self) -> str:
        return self._digest.hexdigest() if self.bytes else ""


class CapturingCount(BodyCount):
    """A ``BodyCount`` that also keeps the body's first ``cap`` bytes, for evidence
    (``apps.audit.evidence``).  Only an exchange whose upstream or rule captures gets one, so
    every other exchange streams through the plain ``BodyCount``: no extra work per chunk."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap
        self.kept = bytearray()  # never more than ``cap`` bytes: the memory of a capture is bounded

    def add(self, chunk: bytes) -> None:
        super().add(chunk)
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += chunk if len(chunk) <= room else chunk[:room]

    @property
    def truncated(self) -> bool:
        return self.bytes > len(self.kept)


@dataclass(frozen=True)
class Outcome:
    """How it ended: phase 2, written once, when the response is complete or the client gone."""

    status: int | None
    error: str = ""
    upstream_status: int | None = None
    request: BodyCount | None = None
    response: BodyCount | None = None
    ttfb_ms: float | None = None
    client_aborted: bool = False
    # A WebSocket's close code (the one received from the side that closed, or the one the
    # gateway sent when it closed both); None for HTTP exchanges.
    close_code: int | None = None
    # What is captured of the bodies when the upstream or the rule asks for evidence: stored
    # (blobs and links committed) by ``finish()`` before the outcome that names them is spooled.
    capture: Capture | None = None

    def fields(self, duration_ms: float) -> dict[str, Any]:
        request, response = self.request or BodyCount(), self.response or BodyCount()
        websocket = {} if self.close_code is None else {"close_code": self.close_code}
        return {
            **websocket,
            "completed_at": timezone.now(),
            "duration_ms": duration_ms,
            "status": self.status,
            "upstream_status": self.upstream_status,
            "error": self.error,
            "request_bytes": request.bytes,
            "request_sha256": request.sha256(),
            "response_bytes": response.bytes,
            "response_sha256": response.sha256(),
            "ttfb_ms": self.ttfb_ms,
            "client_aborted": self.client_aborted,
        }


class GatewayAttempt:
    """The audit event of one gateway attempt, written in two phases (or one, for a refusal)."""

    def __init__(self, attempt: Attempt, started: float | None = None):
        self.attempt = attempt
        self.started = time.monotonic() if started is None else started  # when the request arrived
        self.overhead_ms: float | None = None
        self.event_id: int | None = None
        self.finished = False

    @property
    def request_id(self) -> str:
        return self.attempt.request_id

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 3)

    def deny(self, outcome: Outcome) -> int:
        """A refusal: attempt and outcome in one insert.  Returns the event's id."""
        self.finished = True
        self.event_id = AuditEvent.objects.insert(
            **self.attempt.fields(), overhead_ms=None, **outcome.fields(self.elapsed_ms())
        )
        return self.event_id

    def begin(self) -> int:
        """Phase 1, before forwarding: raises DatabaseError when the attempt cannot be recorded."""
        self.overhead_ms = self.elapsed_ms()
        self.event_id = AuditEvent.objects.insert(**self.attempt.fields(), overhead_ms=self.overhead_ms)
        return self.event_id

    def finish(self, outcome: Outcome) -> None:
        """Phase 2, once: the outcome, spooled.  Without a phase-1 row (fail-open) it inserts both.

        Never raises for a database outage: a spooled outcome waits for the database.
        """
        if self.finished:
            return
        self.finished = True
        fields = outcome.fields(self.elapsed_ms())
        if outcome.capture is not None:
            # Committed before the outcome is spooled: no event ever names a blob that is not there.
            fields["evidence"] = outcome.capture.store(self.event_id)
        if self.event_id is None:
            try:
                AuditEvent.objects.insert(**self.attempt.fields(), overhead_ms=self.overhead_ms, **fields)
            except DatabaseError:
                logger.error("AUDIT EVENT LOST: fail-open request %s could not be recorded", self.request_id)
            return
        try:
            outcome_spool().append(self.event_id, fields)
        except OSError:
            logger.exception("Audit outcome spool unavailable: writing the outcome of event %s directly", self.event_id)
            try:
                AuditEvent.objects.record_outcome(self.event_id, **fields)
            except DatabaseError:
                logger.error("AUDIT OUTCOME LOST: event %s (no spool, no database); it will read as interrupted",
                             self.event_id)  # fmt: skip
