"""The registry of audit event types, and one function per kind of event.

Event type names are stable, dotted and lowercase: ``<area>.<what happened>``, and each
has a stable numeric id (``EVENT_TYPE_IDS``, used in exports and for compact storage).
To add one: add a constant below and its id at the end of ``EVENT_TYPE_IDS`` (never
rename, renumber or reuse an old one: auditors filter on them), record it through
``record()`` or a small function here, and cover it in a test.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from apps.audit.choices import Decision
from apps.audit.masking import mask_changes
from apps.audit.models import AuditEvent

# Gateway attempts (written by apps.audit.recording.GatewayAttempt).
GATEWAY_REQUEST = "gateway.request"
GATEWAY_DENIED = "gateway.denied"
# Authentication.
AUTH_FAILED = "auth.failed"
# API tokens.
TOKEN_CREATED = "token.created"
TOKEN_REVOKED = "token.revoked"
# Users and groups, changed in the admin.
USER_CREATED = "user.created"
USER_UPDATED = "user.updated"
USER_DELETED = "user.deleted"
# The audit trail's own readers: auditors' reads, exports and verifications are audited too.
AUDIT_VIEWED = "audit.viewed"
AUDIT_EXPORTED = "audit.exported"
AUDIT_VERIFIED = "audit.verified"
# Upstreams and access rules.
UPSTREAM_CREATED = "upstream.created"
UPSTREAM_UPDATED = "upstream.updated"
UPSTREAM_DELETED = "upstream.deleted"
RULE_CREATED = "rule.created"
RULE_UPDATED = "rule.updated"
RULE_DELETED = "rule.deleted"
# Upstreams asking whether an X-Auditgate-Identity assertion is active (POST /api/introspect).
IDENTITY_INTROSPECTED = "identity.introspected"

EVENT_TYPE_IDS = {
    GATEWAY_REQUEST: 1,
    GATEWAY_DENIED: 2,
    AUTH_FAILED: 3,
    TOKEN_CREATED: 4,
    TOKEN_REVOKED: 5,
    UPSTREAM_CREATED: 6,
    UPSTREAM_UPDATED: 7,
    UPSTREAM_DELETED: 8,
    RULE_CREATED: 9,
    RULE_UPDATED: 10,
    RULE_DELETED: 11,
    AUDIT_VIEWED: 12,
    AUDIT_EXPORTED: 13,
    AUDIT_VERIFIED: 14,
    USER_CREATED: 15,
    USER_UPDATED: 16,
    USER_DELETED: 17,
    IDENTITY_INTROSPECTED: 18,
}
EVENT_TYPES = frozenset(EVENT_TYPE_IDS)


def _request_fields(request: Any) -> dict[str, Any]:
    if request is None:
        return {}
    meta = request.META
    user = getattr(request, "user", None)
    authenticated = bool(user is not None and user.is_authenticated)
    return {
        "request_id": getattr(request, "request_id", ""),
        "actor_id": user.pk if authenticated else None,
        "actor_username": user.get_username() if authenticated else "",
        "source_ip": meta.get("REMOTE_ADDR") or None,
        "user_agent": meta.get("HTTP_USER_AGENT", "")[:255],
        "method": request.method or "",
        "path": request.path[:2000],
    }


def record(event_type: str, *, request: Any = None, **fields: Any) -> AuditEvent:
    """Write one event; ``fields`` are AuditEvent fields and win over the request's."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"Unknown audit event type {event_type!r}: add it to apps.audit.events.")
    now = timezone.now()
    # Such events are complete when written (only gateway attempts have a second phase).
    values = {"occurred_at": now, "completed_at": now, **_request_fields(request), **fields}
    return AuditEvent.objects.create(event_type=event_type, **values)


def record_change(
    event_type: str, obj: models.Model, *, request: Any = None, changes: dict[str, Any] | None = None
) -> AuditEvent:
    """A change to a token, upstream or rule; ``changes`` maps field -> [before, after]."""
    return record(
        event_type,
        request=request,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        changes=mask_changes(changes) if changes else None,
    )


def record_auth_failure(request: Any, reason: str, *, token_key_id: str = "", status: int = 401) -> AuditEvent:
    """An API (not gateway) request refused at authentication, e.g. an expired token."""
    return record(
        AUTH_FAILED, request=request, decision=Decision.DENY, reason=reason, status=status, token_key_id=token_key_id
    )
