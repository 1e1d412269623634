"""API token authentication: ``APITokenAuthentication`` for the gateway,
``ManagementAPITokenAuthentication`` for the management API (``/api/``).

Tokens are read from the ``Authorization`` header only (never the query string
or body, which end up in logs): ``Token <token>`` or ``Bearer <token>``.  On
success ``request.user`` is the token's user and ``request.auth`` the
``APIToken``.  Refusals raise DRF exceptions with a stable ``code``:

- 401 ``authentication_failed``: malformed header or token (refused before any
  query), unknown key id or wrong secret (same code, similar time), disabled
  token, inactive user;
- 401 ``token_expired`` / ``token_revoked``: only once the secret matched, so a
  key id alone (it is in the audit trail) reveals nothing;
- 403 ``source_ip_not_allowed``: the peer is outside the token's ``allowed_cidrs``;
- 403 ``token_scope``: management API only, the token has no management scope at
  all (``scopes`` empty: a gateway-only token).  Which scope each view needs, and
  the upstream limit on the management API, are checked by the views' permission
  (``apps.core.api.permissions.TokenScope``), with the same code.

Each exception carries ``token_key_id`` ("" if the token did not parse) for auditing.

Exactly one audit event per refused request: the gateway view records its own
attempt with the exception's code as reason, so ``APITokenAuthentication``
records nothing; ``ManagementAPITokenAuthentication`` records ``auth.failed``
for each refusal it raises (DRF authenticates a request once: ``Request.user``
is computed once, also after a failure).

Token rows are cached per process for at most ``settings.POLICY_CACHE_SECONDS``:
a revocation, expiry change or user deactivation takes effect everywhere within
that bound.  The secret is checked against the row on every request.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from apps.audit import events
from apps.gateway import tokens
from apps.gateway.addresses import client_ip
from apps.gateway.cache import TTLCache
from apps.gateway.choices import Reason, TokenStatus
from apps.gateway.models import APIToken

logger = logging.getLogger(__name__)

SCHEMES = (b"token", b"bearer")


class TokenAuthenticationFailed(exceptions.AuthenticationFailed):
    def __init__(self, detail: str, code: Reason = Reason.AUTHENTICATION_FAILED, token_key_id: str = ""):
        super().__init__(detail, code=str(code))
        self.token_key_id = token_key_id


class TokenPermissionDenied(exceptions.PermissionDenied):
    def __init__(self, detail: str, code: Reason, token_key_id: str = ""):
        super().__init__(detail, code=str(code))
        self.token_key_id = token_key_id


TokenRefused = (TokenAuthenticationFailed, TokenPermissionDenied)


def load_token(key_id: str) -> APIToken | None:
    return APIToken.objects.select_related("user").prefetch_related("upstreams").filter(key_id=key_id).first()


# Token rows by key id (None for an unknown id), shared by the threads of a process;
# requests get private copies.  Tests may replace it with one on a fake clock.
token_cache: TTLCache[APIToken | None] = TTLCache(settings.POLICY_CACHE_SECONDS)


def _private_copy(token: APIToken) -> APIToken:
    """A copy for one request, so that nothing a view does to it reaches other threads."""
    mine = _clone(token)
    mine.user = _clone(token.user)
    return mine


def _clone(instance: Any) -> Any:
    """What ``copy.copy`` makes of a model instance (its own ``_state`` and relation cache),
    without the detour through pickling's ``__reduce__``: a third of authentication's CPU."""
    clone = object.__new__(type(instance))
    clone.__dict__.update(instance.__dict__)
    clone._state = copy.copy(instance._state)
    clone._state.fields_cache = dict(instance._state.fields_cache)
    return clone


def _peer_ip(request: Any) -> str | None:
    """The caller's address, through trusted proxies (the same one the audit trail records)."""
    peer = client_ip(request.META)
    try:
        return str(ipaddress.ip_address(peer))
    except ValueError:
        return None


class APITokenAuthentication(BaseAuthentication):
    """Authenticates ``Authorization: Token|Bearer agt_...``; records no audit event."""

    def authenticate(self, request: Any) -> tuple[Any, APIToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in SCHEMES:
            return None
        if len(parts) != 2:
            raise TokenAuthenticationFailed("Invalid token header: expected '<scheme> <token>'.")
        parsed = tokens.parse(parts[1].decode("latin-1"))
        if parsed is None:
            raise TokenAuthenticationFailed("Invalid token.")
        cached = token_cache.get_or_load(parsed.key_id, partial(load_token, parsed.key_id))
        # secret_matches first: it costs the same whether or not the key id exists.
        if not tokens.secret_matches(parsed.secret, cached) or cached is None:
            if cached is not None and cached.pepper_id not in settings.TOKEN_PEPPERS:
                logger.warning("Token %s uses pepper %s, no longer configured.", cached.key_id, cached.pepper_id)
            raise TokenAuthenticationFailed("Invalid token.", token_key_id=parsed.key_id)
        now = timezone.now()
        self.check(cached, request, now)
        self._note_use(cached, request, now)
        token = _private_copy(cached)
        return token.user, token

    def check(self, token: APIToken, request: Any, now: datetime) -> None:
        """Refuse a token whose secret matched but which may not be used for ``request``."""
        status = token.status(now)
        if status == TokenStatus.REVOKED:
            raise TokenAuthenticationFailed("This token was revoked.", Reason.TOKEN_REVOKED, token.key_id)
        if status == TokenStatus.EXPIRED:
            raise TokenAuthenticationFailed("This token has expired.", Reason.TOKEN_EXPIRED, token.key_id)
        if status == TokenStatus.DISABLED:
            raise TokenAuthenticationFailed("This token is disabled.", token_key_id=token.key_id)
        if not token.user.is_active:
            raise TokenAuthenticationFailed("User inactive or deleted.", token_key_id=token.key_id)
        if not token.allows_source(_peer_ip(request)):
            raise TokenPermissionDenied(
                "This token may not be used from your address.", Reason.SOURCE_IP_NOT_ALLOWED, token.key_id
            )

    @staticmethod
    def _note_use(cached: APIToken, request: Any, now: datetime) -> None:
        """Write last_used_at/ip at most once per TOKEN_LAST_USED_INTERVAL per token.

        The conditional UPDATE enforces the interval across processes; marking the
        cached row makes this process skip even the UPDATE until the interval has
        passed (a race between threads costs at most one UPDATE that writes nothing).
        """
        interval = settings.TOKEN_LAST_USED_INTERVAL
        if cached.last_used_at is not None and now - cached.last_used_at < timedelta(seconds=interval):
            return
        APIToken.objects.touch(cached.pk, now=now, ip=_peer_ip(request), interval_seconds=interval)
        cached.last_used_at = now

    def authenticate_header(self, request: Any) -> str:
        return 'Token realm="auditgate"'


class ManagementAPITokenAuthentication(APITokenAuthentication):
    """For ``/api/``: the token also needs some management scope; every refusal is audited."""

    def authenticate(self, request: Any) -> tuple[Any, APIToken] | None:
        try:
            return super().authenticate(request)
        except TokenRefused as exc:
            # The Django request: reading .user on DRF's Request here would authenticate again.
            django_request = getattr(request, "_request", request)
            events.record_auth_failure(
                django_request, str(exc.get_codes()), token_key_id=exc.token_key_id, status=exc.status_code
            )
            raise

    def check(self, token: APIToken, request: Any, now: datetime) -> None:
        super().check(token, request, now)
        if not token.scopes:
            raise TokenPermissionDenied(
                "This token may not use the management API (it has no scope).", Reason.TOKEN_SCOPE, token.key_id
            )
