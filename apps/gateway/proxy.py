"""Forwarding a request to an upstream and relaying its answer, streamed both ways.

Redirects are never followed (the client sees the upstream's 3xx, its Location
rewritten to the gateway), nothing is retried (a retried POST could run twice),
bodies are passed through untouched (compressed stays compressed), and every
call has connect and read timeouts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import IO, Any

import urllib3
from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse

from apps.audit.recording import GatewayAttempt
from apps.gateway import identity, ssrf
from apps.gateway.addresses import forwarded_for
from apps.gateway.choices import UpstreamError
from apps.gateway.models import Upstream
from apps.gateway.upstream_client import pool_for

logger = logging.getLogger(__name__)

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
# Rebuilt or decided by the gateway, never copied from the caller.  Authorization
# carries the caller's gateway token: it never reaches an upstream.
NOT_FORWARDED = frozenset(
    {
        "authorization",
        "cookie",
        "host",
        "content-length",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-request-id",
        "forwarded",
        "via",
        "x-auditgate-identity",
    }
)
_NEVER_FROM_CALLER = HOP_BY_HOP | NOT_FORWARDED
IDENTITY_HEADER = "X-Auditgate-Identity"


def _listed_in_connection(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def _caller_headers(meta: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-").title(), value
        elif key == "CONTENT_TYPE" and value:
            yield "Content-Type", value


def hops_through_us(meta: dict[str, Any]) -> int:
    """How many times this request already passed this gateway (its id in ``Via``)."""
    ours = settings.GATEWAY_ID
    return sum(1 for hop in meta.get("HTTP_VIA", "").split(",") if hop.split()[1:2] == [ours])


def identity_header(key: str, username: str, token_key_id: str, request_id: str, now: int | None = None) -> str:
    """The signed ``X-Auditgate-Identity`` value (apps.gateway.identity, docs/identity-header.md)."""
    return identity.sign(key, username, token_key_id, request_id, now)


def request_headers(
    request: HttpRequest, upstream: Upstream, attempt: GatewayAttempt, content_length: int
) -> dict[str, str]:
    meta = request.META
    dropped = _NEVER_FROM_CALLER | _listed_in_connection(meta.get("HTTP_CONNECTION", ""))
    headers = {name: value for name, value in _caller_headers(meta) if name.lower() not in dropped}
    if upstream.forward_cookies and meta.get("HTTP_COOKIE"):
        headers["Cookie"] = meta["HTTP_COOKIE"]
    if upstream.preserve_host:
        headers["Host"] = request.get_host()
    headers["X-Forwarded-For"] = forwarded_for(meta)
    headers["X-Forwarded-Proto"] = request.scheme or "http"
    headers["X-Forwarded-Host"] = request.get_host()
    headers["X-Request-ID"] = attempt.request_id
    earlier_via = meta.get("HTTP_VIA")
    ours = f"1.1 {settings.GATEWAY_ID}"
    headers["Via"] = f"{earlier_via}, {ours}" if earlier_via else ours
    if content_length:
        headers["Content-Length"] = str(content_length)
    if upstream.identity_key:
        headers[IDENTITY_HEADER] = identity_header(
            upstream.identity_key, attempt.actor_username, attempt.token_key_id, attempt.request_id
        )
    if attempt.injected_credential:
        headers[upstream.credential_header] = upstream.credential_value
    return headers


def response_headers(upstream_response: urllib3.BaseHTTPResponse) -> list[tuple[str, str]]:
    dropped = HOP_BY_HOP | _listed_in_connection(upstream_response.headers.get("Connection", ""))
    return [(name, value) for name, value in upstream_response.headers.iteritems() if name.lower() not in dropped]


class ClientGone(Exception):
    """The client went away while its request body was being read (not an OSError on purpose:
    urllib3 would report it as an upstream failure)."""


class CountingReader:
    """The request body as a file for urllib3, read in blocks and counted (never held whole)."""

    def __init__(self, stream: IO[bytes], attempt: GatewayAttempt, length: int):
        self._stream = stream
        self._attempt = attempt
        self._length = length

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size if size and size > 0 else 64 * 1024)
        except OSError as exc:  # mod_wsgi: "request data read error"
            raise self._gone() from exc
        if not data and self._attempt.request_bytes < self._length:
            raise self._gone()  # the body ended before its Content-Length
        self._attempt.request_bytes += len(data)
        self._attempt.request_digest.update(data)
        return data

    def _gone(self) -> ClientGone:
        self._attempt.client_aborted = True
        return ClientGone(f"client left after {self._attempt.request_bytes} of {self._length} body bytes")


def open_upstream(
    upstream: Upstream, method: str, url: str, headers: dict[str, str], body: CountingReader | None
) -> urllib3.BaseHTTPResponse:
    return pool_for(upstream.internal).request(
        method,
        url,
        headers=headers,
        body=body,
        preload_content=False,
        decode_content=False,
        redirect=False,
        retries=False,
        timeout=urllib3.Timeout(connect=upstream.connect_timeout, read=upstream.read_timeout),
    )


class ResponseTooLarge(Exception):
    """The upstream declared a body larger than the upstream's ``max_response_bytes``."""


# What can go wrong talking to an upstream; anything else is a bug and stays a 500.
UPSTREAM_FAILURES = (urllib3.exceptions.HTTPError, OSError, ssrf.GuardRefusal, ResponseTooLarge)


def declared_length(upstream_response: urllib3.BaseHTTPResponse) -> int:
    try:
        return int(upstream_response.headers.get("Content-Length") or 0)
    except ValueError:
        return 0


def classify(exc: BaseException) -> UpstreamError:
    """The reason code of an upstream failure (order matters: urllib3's classes nest)."""
    e = urllib3.exceptions
    checks: list[tuple[type[BaseException] | tuple[type[BaseException], ...], UpstreamError]] = [
        (ResponseTooLarge, UpstreamError.TOO_LARGE),
        (ssrf.Unresolvable, UpstreamError.DNS_FAILED),
        (ssrf.ForbiddenAddress, UpstreamError.ADDRESS_BLOCKED),
        (e.NameResolutionError, UpstreamError.DNS_FAILED),
        (e.SSLError, UpstreamError.TLS_FAILED),
        (e.NewConnectionError, UpstreamError.REFUSED),
        (e.ConnectTimeoutError, UpstreamError.CONNECT_TIMEOUT),
        (e.ReadTimeoutError, UpstreamError.READ_TIMEOUT),
        ((e.ProtocolError, ConnectionError), UpstreamError.RESET),
    ]
    for kinds, reason in checks:
        if isinstance(exc, kinds):
            if reason is UpstreamError.REFUSED and "refused" not in str(exc).lower():
                return UpstreamError.UNREACHABLE
            return reason
    return UpstreamError.UNREACHABLE


class Relay:
    """The response body, streamed from the upstream; records the attempt when closed.

    The WSGI server calls ``close()`` after the last chunk or when the client goes
    away, so the audit event is written exactly once in either case.  A class rather
    than a generator because a generator that never started (a client gone before the
    first chunk) does not run its ``finally``.
    """

    def __init__(
        self, upstream_response: urllib3.BaseHTTPResponse, attempt: GatewayAttempt, has_body: bool, limit: int
    ):
        self._response = upstream_response
        self._attempt = attempt
        self._complete = not has_body
        self._limit = limit

    def __iter__(self) -> Iterator[bytes]:
        if self._complete:
            return
        try:
            for chunk in self._response.stream(settings.GATEWAY_STREAM_CHUNK_BYTES, decode_content=False):
                self._attempt.response_bytes += len(chunk)
                self._attempt.response_digest.update(chunk)
                if self._attempt.response_bytes > self._limit:
                    self._attempt.error = UpstreamError.TOO_LARGE
                    logger.warning("Upstream %s answered more than %d bytes", self._attempt.upstream_name, self._limit)
                    return  # The client sees a short body and a closed connection.
                yield chunk
            self._complete = True
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._attempt.error = UpstreamError.STREAM_BROKEN
            logger.warning("Upstream %s broke off its response: %s", self._attempt.upstream_name, type(exc).__name__)

    def close(self) -> None:
        if not self._complete and not self._attempt.error:
            self._attempt.error = UpstreamError.CLIENT_ABORTED
            self._attempt.client_aborted = True
        if self._complete:
            self._response.release_conn()
        else:
            self._response.close()  # A half-read connection cannot be reused.
        self._attempt.finish()


class RelayedResponse(StreamingHttpResponse):
    """A streamed response that keeps repeated upstream headers (``Set-Cookie`` above all).

    Django's header mapping holds one value per name; a second value is kept
    aside and emitted by ``items()``, which is what Django's WSGI handler sends.
    """

    def __init__(self, relay: Relay, status: int, headers: list[tuple[str, str]]):
        super().__init__(relay, status=status)
        del self.headers["Content-Type"]  # Only the upstream's own, if it sent one.
        self._repeated: list[tuple[str, str]] = []
        for name, value in headers:
            if name in self.headers:
                self._repeated.append((name, value))
            else:
                self.headers[name] = value

    def items(self):  # type: ignore[override]
        return [*super().items(), *self._repeated]
