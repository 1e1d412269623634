"""Introspection of identity assertions (``POST /api/introspect``, RFC 7662 shape).

An upstream that received ``X-Auditgate-Identity`` may ask auditgate whether it is
still good instead of (or besides) checking the signature itself.  The upstream
authenticates as itself, with HTTP Basic ``<upstream name>:<identity key>`` (RFC 7662
section 2.1: the protected resource authenticates; the key is the secret it already
holds), so an upstream can only introspect assertions that were signed for it.

The assertion is active when its signature matches the caller's key, it is younger
than ``GATEWAY_IDENTITY_MAX_AGE``, the gateway attempt it names (``rid``) is in the
audit trail for this upstream and user, and that user and API token are still
usable now (a revocation shows at once, within the token cache's second).

This is the nested request the product was born from: the gateway daemon group
waits on the upstream while the upstream calls back here, which the vhost serves
from the other (API) daemon group, so it can never wait for a thread of its own.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.audit.events import GATEWAY_REQUEST
from apps.audit.models import AuditEvent
from apps.core.secrets_at_rest import UnreadableSecret
from apps.gateway import identity
from apps.gateway.authentication import load_token, token_cache
from apps.gateway.cache import TTLCache
from apps.gateway.choices import IntrospectionReason as Why
from apps.gateway.models import Upstream

logger = logging.getLogger(__name__)

# The assertion may have been signed on another web host, whose clock may differ a little.
_FUTURE_SKEW_SECONDS = 5
_callers: TTLCache[Upstream | None] = TTLCache(settings.POLICY_CACHE_SECONDS)


@dataclass
class Introspection:
    reason: Why
    upstream: Upstream | None = None
    assertion: identity.Assertion | None = None
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.reason == Why.ACTIVE

    def response(self) -> dict[str, Any]:
        """RFC 7662 section 2.2: only ``active`` unless the assertion is active."""
        return {"active": True, **self.claims} if self.active else {"active": False}


def authenticate_caller(name: str, key: str) -> Upstream | None:
    """The upstream named ``name`` if ``key`` is its identity key (constant time)."""
    upstream = _callers.get_or_load(name, lambda: Upstream.objects.filter(name=name).first())
    stored = upstream.identity_key if upstream is not None else ""
    if upstream is not None and isinstance(stored, UnreadableSecret):  # empty text: no caller matches
        logger.error("Upstream %s: no key of AUDITGATE_SECRETS_KEYS decrypts its identity_key", name)
    # Compare even when there is no such upstream, so timing does not tell names apart.
    matches = hmac.compare_digest((stored or "\0").encode(), key.encode())
    return upstream if upstream is not None and stored and upstream.enabled and matches else None


def introspect(caller: Upstream, value: str, now: datetime | None = None) -> Introspection:
    now = now or timezone.now()
    try:
        assertion = identity.verify(caller.identity_key, value)
    except identity.InvalidAssertion as exc:
        return Introspection(Why(str(exc)), caller)
    age = now.timestamp() - assertion.issued_at
    if age > settings.GATEWAY_IDENTITY_MAX_AGE or age < -_FUTURE_SKEW_SECONDS:
        return Introspection(Why.EXPIRED, caller, assertion)
    attempt = AuditEvent.objects.with_request_id(assertion.request_id).filter(
        event_type=GATEWAY_REQUEST, upstream_name=caller.name,
        actor_username=assertion.username, token_key_id=assertion.token_key_id,
    ).values("actor_groups").first()  # fmt: skip
    if attempt is None:
        return Introspection(Why.UNKNOWN_REQUEST, caller, assertion)
    token = token_cache.get_or_load(assertion.token_key_id, lambda: load_token(assertion.token_key_id))
    if token is None or not token.is_usable(now) or token.user.get_username() != assertion.username:
        return Introspection(Why.TOKEN_INACTIVE, caller, assertion)
    claims = {
        "sub": assertion.username,
        "username": assertion.username,
        "aud": caller.name,
        "iss": settings.GATEWAY_ID,
        "iat": assertion.issued_at,
        "exp": assertion.issued_at + settings.GATEWAY_IDENTITY_MAX_AGE,
        "token_type": "auditgate-identity",
        "token_key_id": assertion.token_key_id,
        "request_id": assertion.request_id,
        "groups": attempt["actor_groups"],
    }
    return Introspection(Why.ACTIVE, caller, assertion, claims)
