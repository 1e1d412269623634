"""Forwarding a request to an upstream and relaying its answer, streamed both ways.

Redirects are never followed (the client sees the upstream's 3xx, its Location
rewritten to the gateway), nothing is retried (a retried POST could run twice),
bodies are passed through untouched (compressed stays compressed), and every
call has connect and read timeouts and an overall deadline (``total_timeout``): an
upstream that trickles its answer cannot hold a gateway thread for longer than that.
Which headers cross, in either direction, is decided in ``apps.gateway.headers``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import IO

import urllib3
from django.conf import settings
from django.http import StreamingHttpResponse

from apps.audit.recording import GatewayAttempt
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


class CountingReader:
    """The request body as a file for urllib3, read in blocks and counted (never held whole)."""

    def __init__(self, stream: IO[bytes], attempt: GatewayAttempt, length: int):
        self._stream = stream
        self._attempt = attempt
        self._length = length

    def read(self, size: int = -1) -> bytes:
        started = time.monotonic()
        try:
            data = self._stream.read(size if size and size > 0 else 64 * 1024)
        except OSError as exc:  # mod_wsgi: "request data read error"
            raise self._gone(time.monotonic() - started) from exc
        if not data and self._attempt.request_bytes < self._length:
            raise self._gone(time.monotonic() - started)  # the body ended before its Content-Length
        self._attempt.request_bytes += len(data)
        self._attempt.request_digest.update(data)
        return data

    def _gone(self, waited: float) -> ClientGone:
        self._attempt.client_aborted = True
        return ClientGone(
            f"client body cut off after {self._attempt.request_bytes} of {self._length} bytes",
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
    upstream: Upstream, method: str, url: str, headers: urllib3.HTTPHeaderDict, body: CountingReader | None,
    deadline: Deadline,
) -> urllib3.BaseHTTPResponse:  # fmt: skip
    timeout = urllib3.Timeout(
        connect=upstream.connect_timeout, read=upstream.read_timeout, total=max(deadline.remaining(), 0.001)
    )
    try:
        return pool_for(upstream.internal).request(
            method, url, headers=headers, body=body, preload_content=False, decode_content=False,
            redirect=False, retries=False, timeout=timeout,
        )  # fmt: skip
    except urllib3.exceptions.TimeoutError as exc:
        if deadline.passed():
            raise TotalTimeout() from exc
        raise


class ResponseTooLarge(Exception):
    """The upstream declared a body larger than the upstream's ``max_response_bytes``."""


# What can go wrong talking to an upstream; anything else is a bug (see views._forward).
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


class Relay:
    """The response body, streamed from the upstream; records the attempt when closed.

    The WSGI server calls ``close()`` after the last chunk or when the client goes
    away, so the audit event is written exactly once in either case.  A class rather
    than a generator because a generator that never started (a client gone before the
    first chunk) does not run its ``finally``.

    Each read returns what one ``recv`` brought (``read1``) and waits at most the read
    timeout or what is left of the deadline, whichever is shorter: a trickling upstream
    is cut at ``total_timeout`` (the client sees a short body and a closed connection).
    """

    def __init__(
        self, upstream_response: urllib3.BaseHTTPResponse, attempt: GatewayAttempt, has_body: bool,
        upstream: Upstream, deadline: Deadline,
    ):  # fmt: skip
        self._response = upstream_response
        self._attempt = attempt
        self._complete = not has_body
        self._limit = upstream.max_response_bytes
        self._read_timeout = upstream.read_timeout
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        if self._complete:
            return
        chunk_bytes = settings.GATEWAY_STREAM_CHUNK_BYTES
        try:
            while True:
                self._bound_the_next_read()
                chunk = self._response.read1(chunk_bytes, decode_content=False)
                if not chunk:
                    break
                self._attempt.response_bytes += len(chunk)
                self._attempt.response_digest.update(chunk)
                if self._attempt.response_bytes > self._limit:
                    self._fail(UpstreamError.TOO_LARGE, f"answered more than {self._limit} bytes")
                    return
                yield chunk
            self._complete = True
        except TotalTimeout:
            self._fail(UpstreamError.TOTAL_TIMEOUT, "did not finish its answer within total_timeout")
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if isinstance(exc, urllib3.exceptions.TimeoutError) and self._deadline.passed():
                self._fail(UpstreamError.TOTAL_TIMEOUT, "did not finish its answer within total_timeout")
            else:
                self._fail(UpstreamError.STREAM_BROKEN, f"broke off its response: {type(exc).__name__}")

    def _bound_the_next_read(self) -> None:
        remaining = self._deadline.remaining()
        if remaining <= 0:
            raise TotalTimeout()
        connection = self._response.connection
        if connection is not None and connection.sock is not None:
            connection.sock.settimeout(min(self._read_timeout, remaining))

    def _fail(self, error: UpstreamError, what: str) -> None:
        self._attempt.error = error
        logger.warning("Upstream %s %s", self._attempt.upstream_name, what)

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
