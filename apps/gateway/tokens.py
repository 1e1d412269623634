"""API tokens: their format, their hashing, and the two actions that change them.

A token reads ``agt_<key id>_<secret>_<checksum>``: a 12-character key id that
names the row, a 32-character secret of which only ``HMAC-SHA256(pepper,
secret)`` is stored, and a 6-character base62 CRC32 of everything before it, so
that a mistyped or truncated token is refused before any database query.
Key id and secret come from ``secrets`` over [0-9A-Za-z] (~190 bits of secret).

Peppers are deployment secrets (``settings.TOKEN_PEPPERS``); each token stores
the id of its pepper, so a new pepper can become current
(``settings.TOKEN_PEPPER_ID``) while older tokens keep working.

Creating and revoking a token are each one function (``create_token``,
``revoke_token``) used by the API, the admin and ``ensure_admin``: they write
the change and its audit event in one transaction.
"""

from __future__ import annotations

import hmac
import re
import secrets
import string
import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit import events
from apps.audit.acting import Acting
from apps.core import signing
from apps.gateway import scopes as token_scopes
from apps.gateway.models.tokens import APIToken, normalise_cidrs

if TYPE_CHECKING:
    from apps.gateway.models.upstreams import Upstream

PREFIX = "agt"
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base62, in digit order
KEY_ID_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6  # 62**6 > 2**32: any CRC32 fits
_FORMAT = re.compile(
    rf"{PREFIX}_([0-9A-Za-z]{{{KEY_ID_LENGTH}}})_([0-9A-Za-z]{{{SECRET_LENGTH}}})_([0-9A-Za-z]{{{CHECKSUM_LENGTH}}})"
)


class NewToken(NamedTuple):
    plaintext: str
    key_id: str
    secret: str


class ParsedToken(NamedTuple):
    key_id: str
    secret: str


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def checksum(body: str) -> str:
    """Base62 of the CRC32 of ``body``, left-padded to CHECKSUM_LENGTH characters."""
    value = zlib.crc32(body.encode("ascii"))
    digits = []
    for _ in range(CHECKSUM_LENGTH):
        value, digit = divmod(value, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def generate() -> NewToken:
    key_id, secret = _random(KEY_ID_LENGTH), _random(SECRET_LENGTH)
    body = f"{PREFIX}_{key_id}_{secret}"
    return NewToken(f"{body}_{checksum(body)}", key_id, secret)


def parse(text: str) -> ParsedToken | None:
    """The key id and secret of a well-formed token, or None (no database involved)."""
    match = _FORMAT.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    key_id, secret, check = match.groups()
    if not hmac.compare_digest(check, checksum(f"{PREFIX}_{key_id}_{secret}")):
        return None
    return ParsedToken(key_id, secret)


def current_pepper_id() -> int:
    return settings.TOKEN_PEPPER_ID


def hash_secret(secret: str, pepper_id: int) -> str:
    """Hex HMAC-SHA256 of the secret under pepper ``pepper_id`` (KeyError if not configured)."""
    pepper = settings.TOKEN_PEPPERS[pepper_id]
    return signing.sign(pepper, secret.encode("ascii"))


def secret_matches(secret: str, token: APIToken | None) -> bool:
    """Whether ``secret`` is the secret of ``token``, in about the same time whether the
    token exists, has a pepper that is still configured, or neither."""
    if token is None or token.pepper_id not in settings.TOKEN_PEPPERS:
        hmac.compare_digest(hash_secret(secret, current_pepper_id()), "0" * 64)
        return False
    return hmac.compare_digest(hash_secret(secret, token.pepper_id), token.secret_hash)


def check_expiry(expires_at: datetime, *, now: datetime, max_lifetime_days: int) -> None:
    """ValidationError unless ``now < expires_at <= now + max_lifetime_days``."""
    if expires_at <= now:
        raise ValidationError("The expiry must be in the future.", code="expiry_in_past")
    if expires_at > now + timedelta(days=max_lifetime_days):
        raise ValidationError(
            f"A token lives at most {max_lifetime_days} days.", code="max_lifetime", params={"max": max_lifetime_days}
        )


def default_expiry(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(days=settings.TOKEN_MAX_LIFETIME_DAYS)


@transaction.atomic
def create_token(
    *,
    user: Any,  # a User (request.user is typed User | AnonymousUser; the views checked it)
    label: str,
    expires_at: datetime,
    created_by: Any = None,
    acting: Acting | None = None,
    all_upstreams: bool = False,
    upstreams: Iterable[Upstream] = (),
    scopes: Iterable[str] = (),
    management_api: bool = False,
    allowed_cidrs: Iterable[str] | None = (),
    max_lifetime_days: int | None = None,
) -> tuple[APIToken, str]:
    """Create a token and its ``token.created`` event; returns it with its plaintext,
    which exists nowhere else: show it once.

    ``scopes``: what it may do on the management API (``apps.gateway.scopes``; none by
    default: the gateway only).  ``management_api=True`` is the former flag: every scope.
    ``max_lifetime_days`` defaults to ``settings.TOKEN_MAX_LIFETIME_DAYS``; only
    ``ensure_admin`` passes a longer one, for the deploy credential.  ``acting``: who
    creates it, recorded in the event (None only for test and benchmark fixtures).
    """
    check_expiry(
        expires_at, now=timezone.now(), max_lifetime_days=max_lifetime_days or settings.TOKEN_MAX_LIFETIME_DAYS
    )
    new = generate()
    pepper_id = current_pepper_id()
    token = APIToken(
        key_id=new.key_id,
        secret_hash=hash_secret(new.secret, pepper_id),
        pepper_id=pepper_id,
        user=user,
        label=label,
        created_by=created_by,
        expires_at=expires_at,
        all_upstreams=all_upstreams,
        scopes=list(token_scopes.SCOPES if management_api else scopes),
        allowed_cidrs=list(allowed_cidrs or ()),
    )
    token.full_clean()
    token.scopes = token_scopes.normalise_scopes(token.scopes)
    try:
        token.allowed_cidrs = normalise_cidrs(token.allowed_cidrs)
    except ValueError as exc:
        raise ValidationError({"allowed_cidrs": [str(exc)]}) from None
    token.save()
    upstreams = list(upstreams)
    token.upstreams.set(upstreams)
    events.record_change(events.TOKEN_CREATED, token, acting=acting, changes=_created_changes(token, upstreams))
    return token, new.plaintext


def _created_changes(token: APIToken, upstreams: list[Upstream]) -> dict[str, list[Any]]:
    after = {
        "key_id": token.key_id,
        "label": token.label,
        "user": token.user.get_username(),
        "expires_at": token.expires_at.isoformat(),
        "all_upstreams": token.all_upstreams,
        "upstreams": sorted(upstream.name for upstream in upstreams),
        "scopes": token.scopes,
        "allowed_cidrs": token.allowed_cidrs,
    }
    return {field: [None, value] for field, value in after.items()}


@transaction.atomic
def revoke_token(token: APIToken, *, acting: Acting | None = None) -> bool:
    """Revoke ``token`` (the row stays) and write ``token.revoked``; True if it was
    revoked now, False if it already was (no second event).

    One conditional UPDATE, so two concurrent revocations write one event.  Other
    processes notice within ``settings.POLICY_CACHE_SECONDS``.
    """
    now = timezone.now()
    revoked = APIToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    if not revoked:
        token.refresh_from_db(fields=("revoked_at",))
        return False
    token.revoked_at = now
    changes = {"revoked_at": [None, now.isoformat()]}
    events.record_change(events.TOKEN_REVOKED, token, acting=acting, changes=changes)
    return True


def find_token(plaintext: str) -> APIToken | None:
    """The token whose plaintext this is, whatever its state, or None.  Reads the
    database directly (no cache): for commands, not for the request path."""
    parsed = parse(plaintext)
    if parsed is None:
        return None
    token = APIToken.objects.select_related("user").filter(key_id=parsed.key_id).first()
    return token if secret_matches(parsed.secret, token) else None
