"""Forwarding a request to an upstream and relaying its answer, streamed.

One module-level urllib3 pool per daemon process: connections to upstreams are
reused across requests and threads (urllib3's pools are thread-safe), redirects
are never followed (the client sees the upstream's 3xx), nothing is retried
(a retried POST could run twice), and every call has connect and read timeouts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import IO

import urllib3
from django.conf import settings
from django.http import HttpRequest, StreamingHttpResponse

from apps.audit.recording import GatewayAttempt
from apps.gateway.choices import UpstreamError
from apps.gateway.models import Upstream

logger = logging.getLogger(__name__)

# RFC 9110 7.6.1: connection-specific headers never cross a proxy.
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
# The caller's credentials and cookies are auditgate's, never the upstream's.
# Forwarding headers are rebuilt by us, not trusted from the client.
NOT_FORWARDED = frozenset(
    {
        "authorization",
        "cookie",
        "host",
        "content-length",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-request-id",
        "forwarded",
    }
)

_pool = urllib3.PoolManager(num_pools=100, maxsize=32, block=False, retries=False)


def _caller_headers(meta: dict[str, str]) -> Iterator[tuple[str, str]]:
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-").title(), value
        elif key == "CONTENT_TYPE" and value:
            yield "Content-Type", value


def request_headers(request: HttpRequest, request_id: str, content_length: int) -> dict[str, str]:
    connection_listed = {t.strip().lower() for t in request.META.get("HTTP_CONNECTION", "").split(",")}
    headers = {
        name: value
        for name, value in _caller_headers(request.META)
        if name.lower() not in HOP_BY_HOP | NOT_FORWARDED and name.lower() not in connection_listed
    }
    peer = request.META.get("REMOTE_ADDR", "")
    earlier = request.META.get("HTTP_X_FORWARDED_FOR")
    headers["X-Forwarded-For"] = f"{earlier}, {peer}" if earlier else peer
    headers["X-Forwarded-Proto"] = request.scheme or "http"
    headers["X-Forwarded-Host"] = request.get_host()
    headers["X-Request-ID"] = request_id
    if content_length:
        headers["Content-Length"] = str(content_length)
    return headers


def response_headers(upstream_response: urllib3.BaseHTTPResponse) -> list[tuple[str, str]]:
    connection_listed = {t.strip().lower() for t in upstream_response.headers.get("Connection", "").split(",")}
    return [
        (name, value)
        for name, value in upstream_response.headers.iteritems()
        if name.lower() not in HOP_BY_HOP and name.lower() not in connection_listed
    ]


class CountingReader:
    """The request body as a file for urllib3, counting what is actually sent."""

    def __init__(self, stream: IO[bytes], attempt: GatewayAttempt):
        self._stream = stream
        self._attempt = attempt

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._attempt.request_bytes += len(data)
        return data


def open_upstream(
    upstream: Upstream, method: str, url: str, headers: dict[str, str], body: CountingReader | None
) -> urllib3.BaseHTTPResponse:
    return _pool.request(
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


class Relay:
    """The response body, streamed from the upstream; records the attempt when closed.

    The WSGI server calls ``close()`` after the last chunk or when the client
    goes away, so the audit event is written exactly once in either case.  A
    class rather than a generator because a generator that never started
    (a client gone before the first chunk) does not run its ``finally``.
    """

    def __init__(self, upstream_response: urllib3.BaseHTTPResponse, attempt: GatewayAttempt, has_body: bool):
        self._response = upstream_response
        self._attempt = attempt
        self._complete = not has_body

    def __iter__(self) -> Iterator[bytes]:
        if self._complete:
            return
        try:
            for chunk in self._response.stream(settings.GATEWAY_STREAM_CHUNK_BYTES, decode_content=False):
                self._attempt.response_bytes += len(chunk)
                yield chunk
            self._complete = True
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            self._attempt.error = UpstreamError.STREAM_BROKEN
            logger.warning("Upstream %s broke off its response: %s", self._attempt.upstream_name, type(exc).__name__)

    def close(self) -> None:
        if not self._complete and not self._attempt.error:
            self._attempt.error = UpstreamError.CLIENT_ABORTED
        if self._complete:
            self._response.release_conn()
        else:
            self._response.close()  # A half-read connection cannot be reused.
        self._attempt.record()


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
