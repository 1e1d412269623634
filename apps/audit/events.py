"""The registry of audit event types, and one function per kind of event.

Event type names are stable, dotted and lowercase: ``<area>.<what happened>``.
To add one: add a constant below and list it in ``EVENT_TYPES`` (never rename or reuse
an old one: auditors filter on them), record it through
``record()`` or a small function here, and cover it in a test.

Every event names its cause: an ``apps.audit.acting.Acting`` (who, from where, which
request), passed explicitly as ``acting=``.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from apps.audit.acting import Acting
from apps.audit.choices import Decision
from apps.audit.masking import mask_changes
from apps.audit.models import AuditEvent

# Gateway attempts (written by apps.audit.recording.GatewayAttempt).
GATEWAY_REQUEST = "gateway.request"
GATEWAY_DENIED = "gateway.denied"
# One per WebSocket connection allowed through /gw/: opened (status 101), then its outcome
# (closed, duration, bytes each way, close code or error) when it ends.
GATEWAY_WEBSOCKET = "gateway.websocket"
# Authentication.
AUTH_FAILED = "auth.failed"
# API tokens.
TOKEN_CREATED = "token.created"
TOKEN_REVOKED = "token.revoked"
# Users and groups, changed in the admin (users are also created by ensure_admin and create_token).
USER_CREATED = "user.created"
USER_UPDATED = "user.updated"
USER_DELETED = "user.deleted"
# The audit trail's own readers: auditors' reads, exports and verifications are audited too.
AUDIT_VIEWED = "audit.viewed"
AUDIT_EXPORTED = "audit.exported"
AUDIT_VERIFIED = "audit.verified"
# An auditor read a gateway event's captured evidence (apps.audit.evidence): written before the
# evidence is returned (object_id: the event; object_repr: "metadata", "request" or "response").
AUDIT_EVIDENCE_READ = "audit.evidence_read"
# Upstreams and access rules.
UPSTREAM_CREATED = "upstream.created"
UPSTREAM_UPDATED = "upstream.updated"
UPSTREAM_DELETED = "upstream.deleted"
RULE_CREATED = "rule.created"
RULE_UPDATED = "rule.updated"
RULE_DELETED = "rule.deleted"
# Alert rules (apps.alerts), changed through /api/alerts/rules/.
ALERT_RULE_CREATED = "alert_rule.created"
ALERT_RULE_UPDATED = "alert_rule.updated"
ALERT_RULE_DELETED = "alert_rule.deleted"
# Upstreams asking whether an X-Auditgate-Identity assertion is active (POST /api/introspect).
IDENTITY_INTROSPECTED = "identity.introspected"

EVENT_TYPES = frozenset(
    {
        GATEWAY_REQUEST,
        GATEWAY_DENIED,
        GATEWAY_WEBSOCKET,
        AUTH_FAILED,
        TOKEN_CREATED,
        TOKEN_REVOKED,
        UPSTREAM_CREATED,
        UPSTREAM_UPDATED,
        UPSTREAM_DELETED,
        RULE_CREATED,
        RULE_UPDATED,
        RULE_DELETED,
        AUDIT_VIEWED,
        AUDIT_EXPORTED,
        AUDIT_VERIFIED,
        AUDIT_EVIDENCE_READ,
        USER_CREATED,
        USER_UPDATED,
        USER_DELETED,
        IDENTITY_INTROSPECTED,
        ALERT_RULE_CREATED,
        ALERT_RULE_UPDATED,
        ALERT_RULE_DELETED,
    }
)


def record(event_type: str, *, acting: Acting | None = None, **fields: Any) -> AuditEvent:
    """Write one event caused by ``acting`` (None: no acting context, e.g. test data);
    ``fields`` are AuditEvent fields and win over the context's."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"Unknown audit event type {event_type!r}: add it to apps.audit.events.")
    now = timezone.now()
    context = acting.event_fields() if acting is not None else {}
    # Such events are complete when written (only gateway attempts have a second phase).
    values = {"occurred_at": now, "completed_at": now, **context, **fields}
    return AuditEvent.objects.create(event_type=event_type, **values)


def record_change(
    event_type: str, obj: models.Model, *, acting: Acting | None, changes: dict[str, Any] | None = None
) -> AuditEvent:
    """A change to a user, token, upstream or rule; ``changes`` maps field -> [before, after]."""
    return record(
        event_type,
        acting=acting,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        changes=mask_changes(changes) if changes else None,
    )


def record_auth_failure(request: Any, reason: str, *, token_key_id: str = "", status: int = 401) -> AuditEvent:
    """An API (not gateway) request refused at authentication, e.g. an expired token.

    Takes the refused request itself (the Django one where DRF's would authenticate again)."""
    return record(
        AUTH_FAILED,
        acting=Acting.from_request(request),
        decision=Decision.DENY,
        reason=reason,
        status=status,
        token_key_id=token_key_id,
    )
