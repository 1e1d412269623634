"""Recording gateway attempts.

The gateway fills a ``GatewayAttempt`` while it handles a request and calls
``record()`` exactly once, when the client has the whole answer or has gone.
Audit writes run in autocommit, outside any transaction of the request.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.utils import timezone

from apps.audit.events import GATEWAY_DENIED, GATEWAY_REQUEST
from apps.audit.masking import mask_query
from apps.audit.models import AuditEvent, Decision

_MAX_TEXT = 2000


@dataclass
class GatewayAttempt:
    request_id: str
    method: str
    path: str
    query: str = ""
    source_ip: str | None = None
    user_agent: str = ""
    occurred_at: datetime = field(default_factory=timezone.now)
    started: float = field(default_factory=time.monotonic)
    actor_id: int | None = None
    actor_username: str = ""
    token_key_id: str = ""
    upstream_id: int | None = None
    upstream_name: str = ""
    decision: str = Decision.DENY
    reason: str = ""
    rule_id: int | None = None
    status: int = 0
    upstream_status: int | None = None
    error: str = ""
    injected_credential: str = ""
    request_bytes: int = 0
    response_bytes: int = 0
    recorded: bool = False

    def record(self) -> AuditEvent | None:
        if self.recorded:
            return None
        self.recorded = True
        fields = asdict(self)
        for transient in ("started", "recorded"):
            fields.pop(transient)
        fields["path"] = fields["path"][:_MAX_TEXT]
        fields["query"] = mask_query(fields["query"])[:_MAX_TEXT]
        fields["user_agent"] = fields["user_agent"][:255]
        fields["duration_ms"] = round((time.monotonic() - self.started) * 1000, 3)
        event_type = GATEWAY_REQUEST if self.decision == Decision.ALLOW else GATEWAY_DENIED
        return AuditEvent.objects.create(event_type=event_type, **fields)
