"""A WebSocket handshake under ``/gw/``, decided and recorded like every gateway request.

Apache proxies an ``Upgrade: websocket`` request under ``/gw/`` to the relay
(``apps.gateway.wsrelay``) instead of mod_wsgi, with trusted headers it sets itself (any
copy the client sent is overwritten): the request line as the client sent it, the client's
address, the mod_unique_id request id and the scheme.  From those this module builds a
Django request and runs the HTTP gateway's own steps (``views.decide``, ``views.begin``,
``headers.for_upstream``): the same policy, the same refusals, the same audit event.  It
is synchronous (the ORM) and runs in a worker thread of the relay.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import DatabaseError, close_old_connections
from django.http import HttpResponseBase

from apps.audit.recording import BodyCount, GatewayAttempt, Outcome
from apps.core import errors, refusals
from apps.core.middleware import request_id_for
from apps.gateway import headers, tracing, views
from apps.gateway.django_refusals import record_refusal, upstream_named_in
from apps.gateway.models import Upstream
from apps.gateway.relay import Answered
from apps.gateway.steps import Call

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Set by Apache on the proxied handshake (apache/vhost.conf, "WebSockets"), never by a client.
REQUEST_LINE = "X-Auditgate-Request-Line"
PEER = "X-Auditgate-Peer"
REQUEST_ID = "X-Auditgate-Request-Id"
SCHEME = "X-Auditgate-Scheme"
TRUSTED = frozenset(name.lower() for name in (REQUEST_LINE, PEER, REQUEST_ID, SCHEME))
# The relay's own client writes these to the upstream (a new key, its own extensions).
_HANDSHAKE_HEADERS = ("sec-websocket-",)


@dataclass(frozen=True)
class Handshake:
    """The client's handshake as Apache passed it on."""

    method: str
    target: str  # the raw request target, as in the request line
    headers: tuple[tuple[str, str], ...]  # the client's, the trusted ones left out
    peer: str
    request_id: str
    scheme: str

    @classmethod
    def of(cls, raw: list[tuple[str, str]]) -> Handshake | None:
        """None when Apache's trusted headers are missing (not a request Apache proxied)."""
        trusted = {name.lower(): value for name, value in raw if name.lower() in TRUSTED}
        parts = trusted.get(REQUEST_LINE.lower(), "").split(" ")
        if len(parts) != 3 or not trusted.get(PEER.lower()):
            return None
        return cls(
            method=parts[0], target=parts[1], headers=tuple((n, v) for n, v in raw if n.lower() not in TRUSTED),
            peer=trusted[PEER.lower()], request_id=trusted.get(REQUEST_ID.lower(), ""),
            scheme="https" if trusted.get(SCHEME.lower()) == "https" else "http",
        )  # fmt: skip

    def environ(self) -> dict[str, Any]:
        """The WSGI environ mod_wsgi would have built for this request."""
        path, _, query = self.target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.method, "REQUEST_URI": self.target, "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query,
            "SERVER_NAME": "localhost", "SERVER_PORT": "443" if self.scheme == "https" else "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": self.peer, "UNIQUE_ID": self.request_id,
            "wsgi.url_scheme": self.scheme, "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
        }  # fmt: skip
        for name, value in self.headers:
            if "_" in name:  # as Apache drops them for mod_wsgi: X_Api_Key cannot pass as X-Api-Key
                continue
            key = name.upper().replace("-", "_")
            key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"
            environ[key] = f"{environ[key]}, {value}" if key in environ else value  # folded, as Apache does
        return environ


@dataclass(frozen=True)
class Answer:
    """An HTTP answer to the handshake instead of a WebSocket (a refusal, a failed upstream)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @classmethod
    def of(cls, response: HttpResponseBase) -> Answer:
        body = getattr(response, "content", b"")
        extra = [("Content-Length", str(len(body))), ("Connection", "close")]
        return cls(response.status_code, [*response.items(), *extra], body)


@dataclass
class Opening:
    """An allowed handshake whose attempt is committed: where to connect, with what."""

    request: WSGIRequest
    attempt: GatewayAttempt
    target: Upstream
    url: str  # ws:// or wss://
    upstream_headers: list[tuple[str, str]]

    def fail(self, error: str, upstream_status: int | None = None, ttfb_ms: float | None = None) -> Answer:
        """The upstream could not be opened: the event's outcome and the client's answer."""
        answered = (
            Answered(status=upstream_status, ttfb_ms=ttfb_ms or 0.0, request=BodyCount()) if upstream_status else None
        )
        return _in_thread(lambda: Answer.of(views._failed(self.request, self.attempt, error, None, answered)))

    def finish(self, outcome: Outcome) -> None:
        _in_thread(lambda: self.attempt.finish(outcome))


def _in_thread(work: Callable[[], T]) -> T:
    """ORM work from a relay thread: stale connections closed first and after, as Django's
    request signals do around a WSGI request."""
    close_old_connections()
    try:
        return work()
    finally:
        close_old_connections()


def decide(handshake: Handshake) -> Opening | Answer:
    """Run in a worker thread: the gateway's decision for this handshake, and when it is
    allowed, its attempt committed before anything reaches the upstream (fail-closed)."""
    return _in_thread(lambda: _decide(handshake))


def _decide(handshake: Handshake) -> Opening | Answer:
    request = WSGIRequest(handshake.environ())
    request.request_id = request_id_for(request)  # type: ignore[attr-defined]
    try:
        call = Call.of(request, upstream_named_in(request.path_info))
    except DisallowedHost:
        record_refusal(request, "host_not_allowed", 400)
        return Answer.of(errors.json_error(request, "host_not_allowed", refusals.detail_of("host_not_allowed")))
    try:
        return _open(request, call)
    except DatabaseError:
        logger.exception("Database unavailable: refusing WebSocket %s", call.request_id)
        body = errors.error_body(request, "database_unavailable", "The gateway cannot decide or record this now.")
        return Answer.of(views.JsonResponse(body, status=503))


def _open(request: WSGIRequest, call: Call) -> Opening | Answer:
    try:
        decided = views.decide(request, call, websocket=True)
    except views.Denied as denied:
        return Answer.of(views._refuse(request, denied.attempt, denied.refusal))
    unrecorded = views.begin(request, call, decided.attempt, decided.target)
    if unrecorded is not None:
        return Answer.of(unrecorded)
    target = decided.target
    trace = decided.trace.for_upstream(decided.attempt.event_id, tracing.expiry(target.websocket_max_duration))
    sent = headers.for_upstream(request, target, call, decided.caller, 0, trace=trace)
    keep_host = target.preserve_host
    upstream_headers = [
        (name, value)
        for name, value in sent.iteritems()
        if not name.lower().startswith(_HANDSHAKE_HEADERS) and (keep_host or name.lower() != "host")
    ]
    url = "ws" + decided.url.removeprefix("http")  # http://... -> ws://..., https://... -> wss://...
    return Opening(request, decided.attempt, target, url, upstream_headers)
