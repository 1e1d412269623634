"""The signed identity assertion the gateway sends upstreams (``X-Auditgate-Identity``).

``v1;user=..;kid=..;rid=..;ts=..;sig=..`` where sig = HMAC-SHA256(upstream's identity
key, "v1\\nuser\\nkid\\nrid\\nts"), hex.  See docs/identity-header.md: upstreams verify it
themselves with the key, or ask ``POST /api/introspect`` (apps.gateway.introspection).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote

from apps.core import signing

VERSION = "v1"
_FIELDS = ("user", "kid", "rid", "ts", "sig")


class InvalidAssertion(ValueError):
    """The assertion does not parse, or its signature does not match the key."""


@dataclass(frozen=True)
class Assertion:
    username: str
    token_key_id: str
    request_id: str
    issued_at: int


def _signature(key: str, user: str, kid: str, rid: str, ts: str) -> str:
    message = "\n".join((VERSION, user, kid, rid, ts)).encode()
    return signing.sign(key, message)


def assertion(key: str, username: str, token_key_id: str, request_id: str, now: int | None = None) -> str:
    """The signed ``X-Auditgate-Identity`` value."""
    ts = str(int(time.time()) if now is None else now)
    user = quote(username, safe="")
    sig = _signature(key, user, token_key_id, request_id, ts)
    return f"{VERSION};user={user};kid={token_key_id};rid={request_id};ts={ts};sig={sig}"


def verify(key: str, value: str) -> Assertion:
    """The assertion if ``value`` is well formed and signed with ``key``; raises InvalidAssertion."""
    version, *pairs = value.split(";")
    if version != VERSION or len(pairs) != len(_FIELDS) or not all("=" in pair for pair in pairs):
        raise InvalidAssertion("malformed")
    fields = dict(pair.split("=", 1) for pair in pairs)
    if tuple(fields) != _FIELDS or not fields["ts"].isdigit() or len(fields["ts"]) > 12:
        raise InvalidAssertion("malformed")
    expected = _signature(key, fields["user"], fields["kid"], fields["rid"], fields["ts"])
    if not hmac.compare_digest(expected.encode(), fields["sig"].encode()):
        raise InvalidAssertion("bad_signature")
    return Assertion(unquote(fields["user"]), fields["kid"], fields["rid"], int(fields["ts"]))
