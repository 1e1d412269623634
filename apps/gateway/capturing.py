"""Evidence capture for one forwarded exchange (``apps.audit.evidence``), when asked for.

The upstream (``capture_evidence``) or the rule that allowed the call asks for it; a denied
call's body is never read, and WebSockets are not captured.  The gateway knows what must never
be kept, so it names it here: the headers the upstream configures and the credential header,
and the secret values themselves (the injected credential, the caller's token, the identity
key, and the signed headers it sent), redacted wherever they appear.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.http import HttpRequest
from urllib3 import HTTPHeaderDict

from apps.audit.evidence.capture import Capture
from apps.audit.evidence.redaction import Redaction
from apps.gateway.headers import IDENTITY_HEADER
from apps.gateway.models import Upstream

# The shortest value of a redacted header that is also searched for in the bodies.
MIN_ECHOED = 6


def capture_for(
    request: HttpRequest, upstream: Upstream, headers_sent: HTTPHeaderDict, *, rule_asks: bool
) -> Capture | None:
    """A ``Capture`` for this exchange (its request headers set), or None when nobody asks for one."""
    if not (upstream.capture_evidence or rule_asks):
        return None
    rules = Redaction.of(
        fields=upstream.evidence_redact_fields,
        headers=[*upstream.evidence_redact_headers, upstream.credential_header],
        secrets=known_secrets(request, upstream, headers_sent),
    )
    # A redacted header's value, echoed back by the upstream, is redacted too (if long enough
    # not to blank out every short word of the body).
    rules = rules.with_secrets(
        value for name, value in headers_sent.iteritems() if name.lower() in rules.headers and len(value) >= MIN_ECHOED
    )
    capture = Capture(rules, upstream.evidence_max_bytes)
    capture.request.headers = list(headers_sent.iteritems())
    return capture


def known_secrets(request: HttpRequest, upstream: Upstream, headers_sent: HTTPHeaderDict) -> list[str]:
    return [
        str(upstream.credential_value or ""),
        str(upstream.identity_key or ""),
        headers_sent.get(IDENTITY_HEADER, ""),
        *_signed_trace_entries(headers_sent.get("tracestate", "")),
        *_caller_token(request.META.get("HTTP_AUTHORIZATION", "")),
    ]


def _caller_token(authorization: str) -> Iterator[str]:
    """The caller's token as sent (``Token <t>`` or ``Bearer <t>``), and the header's value."""
    yield authorization
    _, _, token = authorization.strip().partition(" ")
    if token.strip():
        yield token.strip()


def _signed_trace_entries(tracestate: str) -> Iterator[str]:
    """The gateway's own ``auditgate=`` entry of ``tracestate`` (signed: it names the attempt)."""
    for entry in tracestate.split(","):
        key, _, value = entry.strip().partition("=")
        if key == "auditgate" and value:
            yield value
