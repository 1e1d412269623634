"""Which headers cross the gateway, in each direction, and what the gateway writes itself.

Header names are case-insensitive (RFC 9110 5.1): every comparison here is on the
lower-cased name, and the request headers are an ``HTTPHeaderDict``, so a header the
gateway sets replaces the caller's whatever its letter case.  Apache folds repeated
request headers into one environ entry and drops names with an underscore
(``X_Api_Key``) before they reach the WSGI environ, so a duplicate or an underscore
spelling cannot smuggle a second value past this policy either (a deployed test checks
both).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import HttpRequest
from urllib3 import HTTPHeaderDict

from apps.gateway import cookies, identity
from apps.gateway.addresses import forwarded_for
from apps.gateway.models import Upstream

if TYPE_CHECKING:
    from apps.gateway.steps import Call, Caller

# RFC 9110 7.6.1: connection-specific headers never cross a proxy, in either direction.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Written by the gateway from what it knows, never copied from the caller.  Authorization
# carries the caller's gateway token: it never reaches an upstream.
SET_BY_GATEWAY = frozenset(
    {
        "authorization",
        "cookie",
        "host",
        "content-length",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "forwarded",
        "via",
        "x-request-id",
        "x-auditgate-identity",
        # W3C Trace Context: the gate takes part in the trace and signs its own entry
        # (apps.gateway.tracing); other vendors' tracestate entries pass on.
        "traceparent",
        "tracestate",
    }
)
# Headers that make common upstream servers and frameworks rewrite the request after the
# policy has judged it: the URL (IIS/Symfony X-Original-URL), the method (Rails, Express,
# Spring's HiddenHttpMethod variants), the scheme, port or prefix (Werkzeug ProxyFix,
# Spring's ForwardedHeaderFilter).  Dropped unless the upstream sets forward_rewrite_headers.
REWRITES_REQUEST = frozenset(
    {
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-forwarded-uri",
        "x-forwarded-path",
        "x-forwarded-prefix",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-method",
        "x-forwarded-port",
        "x-forwarded-scheme",
        "x-forwarded-ssl",
        "x-forwarded-server",
        "x-url-scheme",
        "x-host",
        "x-original-host",
        "x-forwarded-by",
        "front-end-https",
    }
)
IDENTITY_HEADER = "X-Auditgate-Identity"
# The upstream's own HSTS would follow Apache's for the gateway's host name: the gateway
# alone decides its transport policy.
_GATEWAY_OWNS_IN_RESPONSE = frozenset({"strict-transport-security"})


def listed_in_connection(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def caller_headers(meta: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-").title(), value
        elif key == "CONTENT_TYPE" and value:
            yield "Content-Type", value


def hops_through_us(meta: dict[str, Any]) -> int:
    """How many times this request already passed this gateway (its id in ``Via``)."""
    ours = settings.GATEWAY_ID
    return sum(1 for hop in meta.get("HTTP_VIA", "").split(",") if hop.split()[1:2] == [ours])


def _quoted(value: str) -> str:
    """An RFC 7239 quoted-string (IPv6 addresses and ports need the quotes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def forwarded(client: str, proto: str, host: str) -> str:
    client = f"[{client}]" if ":" in client else client
    return f"for={_quoted(client or 'unknown')};proto={proto};host={_quoted(host)}"


def dropped_from_caller(meta: dict[str, Any], credential_header: str, forward_rewrite_headers: bool) -> set[str]:
    """Lower-cased names of the caller's headers that never reach this upstream."""
    dropped = set(HOP_BY_HOP | SET_BY_GATEWAY) | listed_in_connection(meta.get("HTTP_CONNECTION", ""))
    if credential_header:
        dropped.add(credential_header.lower())
    if not forward_rewrite_headers:
        dropped |= REWRITES_REQUEST
    return dropped


def forwardable(meta: dict[str, Any], dropped: set[str]) -> HTTPHeaderDict:
    headers = HTTPHeaderDict()
    for name, value in caller_headers(meta):
        if name.lower() not in dropped:
            headers.add(name, value)
    return headers


def for_upstream(
    request: HttpRequest, upstream: Upstream, call: Call, caller: Caller, content_length: int, *,
    trace: tuple[str, str],
) -> HTTPHeaderDict:  # fmt: skip
    """The request headers sent to ``upstream``: the caller's, filtered, then the gateway's own.
    ``trace``: the ``traceparent`` and ``tracestate`` values (``TraceContext.for_upstream``)."""
    meta = request.META
    headers = forwardable(meta, dropped_from_caller(meta, upstream.credential_header, upstream.forward_rewrite_headers))
    if upstream.forward_cookies and meta.get("HTTP_COOKIE"):
        headers["Cookie"] = meta["HTTP_COOKIE"]
    host, proto = request.get_host(), request.scheme or "http"
    if upstream.preserve_host:
        headers["Host"] = host
    headers["X-Forwarded-For"] = forwarded_for(meta)
    headers["X-Forwarded-Proto"] = proto
    headers["X-Forwarded-Host"] = host
    headers["X-Real-IP"] = call.source_ip or ""
    headers["Forwarded"] = forwarded(call.source_ip or "", proto, host)
    headers["X-Request-ID"] = call.request_id
    headers["traceparent"], headers["tracestate"] = trace
    earlier_via = meta.get("HTTP_VIA")
    ours = f"1.1 {settings.GATEWAY_ID}"
    headers["Via"] = f"{earlier_via}, {ours}" if earlier_via else ours
    if content_length:
        headers["Content-Length"] = str(content_length)
    if upstream.identity_key:
        headers[IDENTITY_HEADER] = identity.assertion(
            upstream.identity_key, caller.username, caller.token_key_id, call.request_id
        )
    if upstream.credential_header and upstream.credential_value:
        headers[upstream.credential_header] = upstream.credential_value
    return headers


def client_facing(
    raw: Iterable[tuple[str, str]], *, upstream_name: str, location: Any, gateway_cookies: frozenset[str]
) -> list[tuple[str, str]]:
    """The upstream's response headers as the client gets them.

    ``location`` rewrites a ``Location`` value into the gateway; cookies are confined
    under ``/gw/<upstream>/`` (``apps.gateway.cookies``).  When the upstream framed its
    body with ``Transfer-Encoding``, its ``Content-Length`` is wrong or a smuggling
    attempt (RFC 9112 6.3): it is dropped, and Apache frames the relayed body itself.
    """
    raw = list(raw)
    names = {name.lower() for name, _ in raw}
    dropped = HOP_BY_HOP | _GATEWAY_OWNS_IN_RESPONSE
    for name, value in raw:
        if name.lower() == "connection":
            dropped = dropped | listed_in_connection(value)
    if "transfer-encoding" in names:
        dropped = dropped | {"content-length"}
    out = []
    for name, value in raw:
        lower = name.lower()
        if lower in dropped:
            continue
        if lower == "location":
            value = location(value)
        elif lower == "set-cookie":
            confined = cookies.confine(value, upstream_name, gateway_cookies)
            if confined is None:
                continue
            value = confined
        out.append((name, value))
    return out
