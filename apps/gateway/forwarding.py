"""Forwarding a request to an upstream: its body streamed and counted, the connection,
the deadline, and what each way of failing is called.

Redirects are never followed (the client sees the upstream's 3xx, its Location
rewritten to the gateway), nothing is retried (a retried POST could run twice),
bodies are passed through untouched (compressed stays compressed), and every
call has connect and read timeouts and an overall deadline (``total_timeout``): an
upstream that trickles its answer cannot hold a gateway thread for longer than that.
Which headers cross is decided in ``apps.gateway.headers``; the answer is relayed by
``apps.gateway.relay``.
"""

from __future__ import annotations

import http.client
import logging
import time
from typing import IO

import urllib3

from apps.audit.recording import BodyCount
from apps.gateway import ssrf
from apps.gateway.choices import UpstreamError
from apps.gateway.models import Upstream
from apps.gateway.upstream_client import InvalidUpstreamResponse, pool_for

logger = logging.getLogger(__name__)


class ClientGone(Exception):
    """The client's request body did not arrive whole (not an OSError on purpose: urllib3
    would report it as an upstream failure).

    ``timed_out``: the client stalled and Apache answered it 408 itself (its
    RequestReadTimeout for bodies), rather than the client hanging up.
    """

    def __init__(self, message: str, *, timed_out: bool):
        super().__init__(message)
        self.timed_out = timed_out


# mod_wsgi reports both a stalled client and one that hung up as a failed read.  A client
# that hangs up fails the read at once; a stalled one fails it when Apache's body timeout
# (RequestReadTimeout body=10,minrate=500) fires, after the read waited for seconds.
STALLED_READ_SECONDS = 1.0


class BodyTooLarge(Exception):
    """A chunked request body grew past the upstream's ``max_request_bytes`` while streaming."""


class RequestBody:
    """The request body as a file for urllib3, read in blocks and counted (never held whole).

    ``length`` None: the client sent it chunked.  urllib3 then forwards it chunked too, and
    ``limit`` (the upstream's ``max_request_bytes``) is enforced as the bytes arrive.
    """

    def __init__(self, stream: IO[bytes], length: int | None, limit: int, count: BodyCount | None = None):
        self._stream = stream
        self._length = length
        self._limit = limit
        self.count = BodyCount() if count is None else count  # a CapturingCount when evidence is captured

    def read(self, size: int = -1) -> bytes:
        started = time.monotonic()
        try:
            data = self._stream.read(size if size and size > 0 else 64 * 1024)
        except OSError as exc:  # mod_wsgi: "request data read error"
            raise self._gone(time.monotonic() - started) from exc
        if not data and self._length is not None and self.count.bytes < self._length:
            raise self._gone(time.monotonic() - started)  # the body ended before its Content-Length
        self.count.add(data)
        if self.count.bytes > self._limit:
            raise BodyTooLarge(f"more than {self._limit} bytes")
        return data

    def _gone(self, waited: float) -> ClientGone:
        return ClientGone(
            f"client body cut off after {self.count.bytes} of {self._length} bytes",
            timed_out=waited >= STALLED_READ_SECONDS,
        )


class TotalTimeout(Exception):
    """The upstream's ``total_timeout`` ran out before its answer was complete."""


class Deadline:
    """When the exchange with an upstream must be over (``total_timeout`` after it began)."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.remaining() <= 0.01  # a socket timeout that fired at the deadline counts as it


def open_upstream(
    upstream: Upstream, method: str, url: str, headers: urllib3.HTTPHeaderDict, body: RequestBody | None,
    deadline: Deadline,
) -> urllib3.BaseHTTPResponse:  # fmt: skip
    timeout = urllib3.Timeout(
        connect=upstream.connect_timeout, read=upstream.read_timeout, total=max(deadline.remaining(), 0.001)
    )
    # RFC 9112 9.3.1: a request without a body whose method is idempotent may be sent again
    # when its connection closed before any answer.  A kept-alive upstream connection can be
    # closed by the upstream just as it is reused; nginx and HAProxy retry these too.  Only once,
    # on another connection, and never a body (it was consumed) or a timeout.
    tries = 2 if body is None and method in _IDEMPOTENT else 1
    for attempt in range(1, tries + 1):
        try:
            return pool_for(upstream.internal).request(
                method, url, headers=headers, body=body, preload_content=False, decode_content=False,  # type: ignore[arg-type]  # a file-like reader
                redirect=False, retries=False, timeout=timeout,
            )  # fmt: skip
        except urllib3.exceptions.TimeoutError as exc:
            if deadline.passed():
                raise TotalTimeout() from exc
            raise
        except urllib3.exceptions.ProtocolError as exc:
            if attempt == tries or not _closed_before_answer(exc) or deadline.passed():
                raise
            logger.info("Upstream %s closed a connection before answering: sending %s again", upstream.name, method)
    raise AssertionError("unreachable")  # the last try returns or raises


_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


def _closed_before_answer(exc: urllib3.exceptions.ProtocolError) -> bool:
    return any(isinstance(arg, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
               for arg in exc.args)  # fmt: skip


class ResponseTooLarge(Exception):
    """The upstream declared a body larger than the upstream's ``max_response_bytes``."""


# What can go wrong talking to an upstream; anything else is a bug (see views.gateway).
UPSTREAM_FAILURES = (urllib3.exceptions.HTTPError, OSError, ssrf.GuardRefusal, ResponseTooLarge, TotalTimeout)


def declared_length(upstream_response: urllib3.BaseHTTPResponse) -> int:
    try:
        return int(upstream_response.headers.get("Content-Length") or 0)
    except ValueError:
        return 0


def classify(exc: BaseException) -> UpstreamError:
    """The reason code of an upstream failure (order matters: urllib3's classes nest)."""
    e = urllib3.exceptions
    if isinstance(exc, e.ProtocolError) and any(isinstance(arg, InvalidUpstreamResponse) for arg in exc.args):
        return UpstreamError.INVALID_RESPONSE
    checks: list[tuple[type[BaseException] | tuple[type[BaseException], ...], UpstreamError]] = [
        (ResponseTooLarge, UpstreamError.TOO_LARGE),
        (TotalTimeout, UpstreamError.TOTAL_TIMEOUT),
        (InvalidUpstreamResponse, UpstreamError.INVALID_RESPONSE),
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
