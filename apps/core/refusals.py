"""One table of refusals: each ``code`` an answer can carry, with its HTTP status and the
default ``detail`` (for people; a raise site may say something more precise).

Read by the gateway (``apps.gateway.views``), the API's error handlers
(``apps.core.errors``) and the OpenAPI schema (``apps.core.openapi``); the README's tables
list the same codes (tests/core/test_refusals.py holds them together).  Codes are plain
strings, so every layer can read the table: the gateway's ``Reason`` and
``UpstreamError`` members are strings and index it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str


# nginx's name for a request whose client left before it could be answered.
CLIENT_CLOSED_REQUEST = 499
_UPSTREAM_FAILED = "The upstream did not give a usable answer."

REFUSALS = MappingProxyType(
    {
        # Any request: what the API and Django answer.
        "invalid": Refusal(400, "The request is invalid."),
        "parse_error": Refusal(400, "JSON parse error - nested deeper than 32 levels."),
        "invalid_cursor": Refusal(400, "Invalid cursor: follow the `next` or `previous` link of a page."),
        "bad_request": Refusal(400, "Bad request."),
        "host_not_allowed": Refusal(400, "This server does not serve the host named in the Host header."),
        "not_authenticated": Refusal(401, "Authentication credentials were not provided."),
        "authentication_failed": Refusal(401, "Invalid token."),
        "token_expired": Refusal(401, "This token has expired."),
        "token_revoked": Refusal(401, "This token was revoked."),
        "invalid_client": Refusal(401, "Authenticate as the upstream: HTTP Basic with its name and identity key."),
        "permission_denied": Refusal(403, "You do not have permission to perform this action."),
        "token_scope": Refusal(403, "This token may not use the management API."),
        "source_ip_not_allowed": Refusal(403, "This token may not be used from your address."),
        "csrf_failed": Refusal(
            403,
            "CSRF check failed: CSRF token missing. Reload the page that sent this form, or authenticate with a token.",
        ),
        "not_found": Refusal(404, "Not found."),
        "length_required": Refusal(411, "Send a Content-Length: chunked request bodies are not accepted."),
        "unsupported_media_type": Refusal(415, 'Unsupported media type "text/plain" in request.'),
        "server_error": Refusal(500, "Internal error; it has been logged."),
        "database_unavailable": Refusal(503, "The database cannot be reached now; retry shortly."),
        "audit_unavailable": Refusal(503, "The audit trail cannot record this request now."),
        # Answered by Apache itself (apache/errors/<status>.json; README, "What Apache answers itself").
        "request_timeout": Refusal(408, "The request did not arrive in time."),
        "uri_too_long": Refusal(414, "The request line or path is too long."),
        "expectation_failed": Refusal(417, "Only Expect: 100-continue is understood."),
        "misdirected_request": Refusal(421, "This server does not serve that host on this connection."),
        "not_implemented": Refusal(501, "Not implemented."),
        "server_unavailable": Refusal(503, "The server is too busy; retry shortly."),
        "server_timeout": Refusal(504, "The server did not answer in time."),
        # The gateway's decision (apps.gateway.choices.Reason).
        "upstream_not_found": Refusal(404, "No such upstream."),
        "upstream_disabled": Refusal(403, "This upstream is disabled."),
        # 403 when the closest rule does not allow the method; the gateway answers 405 for a
        # method it never proxies or one the upstream does not allow.
        "method_not_allowed": Refusal(403, "This method is not allowed here."),
        "invalid_path": Refusal(400, "Invalid path."),
        "no_matching_rule": Refusal(403, "No access rule allows this request."),
        "denied_by_rule": Refusal(403, "An access rule denies this request."),
        "outside_time_window": Refusal(403, "The rule that would allow this request is not in force now."),
        "request_too_large": Refusal(413, "The body is larger than the upstream accepts."),
        "loop_detected": Refusal(508, "This request has looped through the gateway."),
        "invalid_trace_context": Refusal(400, "The auditgate tracestate entry is not valid."),
        "too_many_hops": Refusal(508, "This chain of services calling through the gateway is too deep."),
        "upgrade_not_supported": Refusal(501, "Protocol upgrades other than WebSocket are not proxied."),
        # A deployment fault (AUDITGATE_SECRETS_KEYS lacks the key): nothing is forwarded without the
        # upstream's credential; retry once the operator restored the key.
        "upstream_secret_unreadable": Refusal(503, "The gateway cannot read this upstream's stored credential now."),
        # The upstream leg (apps.gateway.choices.UpstreamError).
        "upstream_refused": Refusal(502, _UPSTREAM_FAILED),
        "upstream_dns_failed": Refusal(502, _UPSTREAM_FAILED),
        "upstream_tls_failed": Refusal(502, _UPSTREAM_FAILED),
        "upstream_address_blocked": Refusal(502, _UPSTREAM_FAILED),
        "upstream_reset": Refusal(502, _UPSTREAM_FAILED),
        "upstream_unreachable": Refusal(502, _UPSTREAM_FAILED),
        "upstream_response_too_large": Refusal(502, _UPSTREAM_FAILED),
        "upstream_invalid_response": Refusal(502, _UPSTREAM_FAILED),
        # Recorded after the status went out (the client sees a cut body); 502 had it not.
        "upstream_stream_broken": Refusal(502, _UPSTREAM_FAILED),
        "upstream_connect_timeout": Refusal(504, _UPSTREAM_FAILED),
        "upstream_read_timeout": Refusal(504, _UPSTREAM_FAILED),
        "upstream_total_timeout": Refusal(504, _UPSTREAM_FAILED),
        "client_body_timeout": Refusal(408, "The request body was cut off."),
        "client_aborted": Refusal(CLIENT_CLOSED_REQUEST, "The request body was cut off."),
        "gateway_error": Refusal(500, "Internal error; it has been logged."),
        # An open WebSocket (101) the gateway closed: recorded as its event's error, never answered.
        "websocket_idle_timeout": Refusal(101, "No WebSocket message either way for the upstream's idle timeout."),
        "websocket_max_duration": Refusal(101, "The WebSocket reached the upstream's maximum duration."),
        "websocket_gateway_stopped": Refusal(101, "The gateway's WebSocket relay stopped."),
    }
)


def status_of(code: str) -> int:
    return REFUSALS[code].status


def detail_of(code: str) -> str:
    return REFUSALS[code].detail
