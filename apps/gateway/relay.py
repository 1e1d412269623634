"""Relaying the upstream's answer to the client, streamed, counted and cut at the limits.

The relay is the only place that counts the answer's bytes and hashes them; when the
WSGI server closes it, it writes the attempt's outcome (``apps.audit.recording``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import urllib3
from django.conf import settings
from django.http import StreamingHttpResponse

from apps.audit.evidence.capture import Capture
from apps.audit.recording import BodyCount, GatewayAttempt, Outcome
from apps.gateway.choices import UpstreamError
from apps.gateway.forwarding import Deadline, TotalTimeout
from apps.gateway.models import Upstream

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answered:
    """What the forward step found: the upstream's status, how long it took, the body sent."""

    status: int
    ttfb_ms: float
    request: BodyCount


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
        self, upstream_response: urllib3.BaseHTTPResponse, attempt: GatewayAttempt, answered: Answered,
        has_body: bool, upstream: Upstream, deadline: Deadline, capture: Capture | None = None,
    ):  # fmt: skip
        self._response = upstream_response
        self._attempt = attempt
        self._answered = answered
        # Chosen once per exchange: without evidence capture the loop below is exactly as before.
        self._capture = capture
        self._count = BodyCount() if capture is None else capture.response.count
        self._error = ""
        self._complete = not has_body
        self._upstream_name = upstream.name
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
                self._count.add(chunk)
                if self._count.bytes > self._limit:
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
        sock = getattr(self._response.connection, "sock", None)  # None once the connection is released
        if sock is not None:
            sock.settimeout(min(self._read_timeout, remaining))

    def _fail(self, error: UpstreamError, what: str) -> None:
        self._error = error
        logger.warning("Upstream %s %s", self._upstream_name, what)

    def close(self) -> None:
        client_left = not self._complete and not self._error
        if self._complete:
            self._response.release_conn()
        else:
            self._response.close()  # A half-read connection cannot be reused.
        answered = self._answered
        self._attempt.finish(
            Outcome(
                status=answered.status, upstream_status=answered.status, ttfb_ms=answered.ttfb_ms,
                request=answered.request, response=self._count, client_aborted=client_left,
                error=UpstreamError.CLIENT_ABORTED if client_left else self._error, capture=self._capture,
            )
        )  # fmt: skip


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

    def items(self) -> list[tuple[str, str]]:
        return [*super().items(), *self._repeated]
