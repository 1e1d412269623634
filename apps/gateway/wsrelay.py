"""The WebSocket relay: an asyncio server on a unix socket that only Apache can reach.

Apache sends ``Upgrade: websocket`` requests under ``/gw/`` here (mod_proxy_http with
``upgrade=websocket``, apache/vhost.conf "WebSockets") instead of to mod_wsgi, which
cannot hold a connection open both ways.  For each handshake:

1. ``apps.gateway.websocket.decide`` in a worker thread: the HTTP gateway's own steps and
   audit attempt; a refusal is answered with its status and JSON body, like over HTTP.
2. Allowed, and the attempt committed: the upstream is opened (``ws://`` or ``wss://`` from
   its base URL), through the SSRF guard at connect time, with the request headers the HTTP
   gateway sends (credential, ``X-Auditgate-Identity``, ``X-Forwarded-*``, trace context) and
   the client's subprotocols; the upstream's choice is the client's.  A failure is the
   HTTP gateway's 502/504 with the same codes.
3. Messages both ways, their payload bytes counted (and hashed) each way; closed by
   either side (its close code passed on), after ``websocket_idle_timeout`` without a
   message (1001) or at ``websocket_max_duration`` (1008), or when the relay stops (1001).
4. One ``gateway.websocket`` event per connection: status 101, bytes each way, duration,
   the close code, and the error when the gateway closed it or a side vanished.

Why ``websockets``: the maintained asyncio implementation of RFC 6455 that serves and
connects (one library both ways), on unix sockets, with a hook before the handshake is
answered (``process_request``) and subprotocol selection per connection; it keeps
pings, close handshakes and size limits to itself.  One event loop holds thousands of
idle connections in a few KiB each, where a WSGI thread per connection would not.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, unix_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import EXTERNAL_CLOSE_CODES, CloseCode
from websockets.headers import parse_subprotocol
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from apps.audit.recording import BodyCount, Outcome
from apps.gateway import ssrf
from apps.gateway.choices import UpstreamError
from apps.gateway.websocket import Answer, Handshake, Opening, decide

logger = logging.getLogger(__name__)

OPENED = 101
# What the gateway sends when it closes both sides itself.
IDLE_CLOSE = CloseCode.GOING_AWAY
MAX_DURATION_CLOSE = CloseCode.POLICY_VIOLATION
STOPPING_CLOSE = CloseCode.GOING_AWAY
# A side that vanished without a close frame (RFC 6455 7.1.5), and what the other side gets then.
ABNORMAL = CloseCode.ABNORMAL_CLOSURE
UPSTREAM_BROKE = CloseCode.BAD_GATEWAY
# How long a close handshake may take; also how long a stop waits for the connections.
CLOSE_TIMEOUT = 5.0
# The whole handshake, the decision and opening the upstream included (its connect_timeout +
# read_timeout, 43 s at most, bound that part): Apache has already read the client's request.
OPEN_TIMEOUT = 60.0


class UpstreamFailure(Exception):
    def __init__(self, error: str, upstream_status: int | None = None):
        super().__init__(error)
        self.error, self.upstream_status = error, upstream_status


@dataclass
class Opened:
    opening: Opening
    upstream: ClientConnection
    ttfb_ms: float


@dataclass
class Traffic:
    """Payload bytes each way, and when the last message passed either way."""

    sent: BodyCount = field(default_factory=BodyCount)  # client -> upstream
    received: BodyCount = field(default_factory=BodyCount)  # upstream -> client
    last: float = field(default_factory=time.monotonic)


class _UpstreamConnection(ClientConnection):
    """The relay's client: a header the gateway sends replaces the library's (``Host`` of
    a ``preserve_host`` upstream) instead of being added next to it."""

    async def handshake(self, additional_headers: Any = None, user_agent_header: str | None = None) -> None:
        connect_request = self.protocol.connect
        names = {name.lower() for name, _ in additional_headers or ()}

        def request() -> Request:
            made = connect_request()
            for name in names & {"host"}:
                del made.headers[name]
            return made

        self.protocol.connect = request  # type: ignore[method-assign]
        await super().handshake(additional_headers, user_agent_header)


class WebSocketRelay:
    """The relay server (one per process: ``site/auditgate/ws_relay.py`` starts it)."""

    def __init__(self, path: str):
        self.path = path
        self._opened: dict[ServerConnection, Opened] = {}
        self._stopping: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def serve(self, started: asyncio.Event | None = None) -> None:
        """Serve until ``stop()``; then close every connection with 1001, each recorded."""
        self._stopping = asyncio.Event()
        server = await self._listen()
        try:
            if started is not None:
                started.set()
            await self._stopping.wait()
            server.close(close_connections=False)
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=CLOSE_TIMEOUT * 2)
        finally:
            server.close()
            await server.wait_closed()

    async def _listen(self) -> Server:
        server = await unix_serve(
            self._handle, self.path, process_request=self._process_request, process_response=self._process_response,
            select_subprotocol=self._select_subprotocol, compression=None, server_header=None,
            max_size=settings.WEBSOCKET_MAX_MESSAGE_BYTES, close_timeout=CLOSE_TIMEOUT, open_timeout=OPEN_TIMEOUT,
        )  # fmt: skip
        os.chmod(self.path, 0o660)  # Apache's group (the directory's setgid) and us only
        logger.info("WebSocket relay listening on %s", self.path)
        return server

    def stop(self) -> None:
        """Thread-safe only through ``loop.call_soon_threadsafe``."""
        if self._stopping is not None:
            self._stopping.set()

    # --- The handshake ---------------------------------------------------------------------

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        handshake = Handshake.of(list(request.headers.raw_items()))
        if handshake is None:
            return _response(Answer(400, [("Content-Type", "text/plain")], b"Not proxied by Apache.\n"))
        result = await asyncio.to_thread(decide, handshake)
        if isinstance(result, Answer):
            return _response(result)
        started = time.monotonic()
        try:
            upstream = await _open_upstream(result, _offered(request.headers))
        except UpstreamFailure as failure:
            logger.warning("WebSocket upstream %s failed: %s", result.target.name, failure.error)
            return _response(await asyncio.to_thread(result.fail, failure.error, failure.upstream_status))
        except BaseException:
            await asyncio.to_thread(result.fail, UpstreamError.GATEWAY_ERROR)
            raise
        self._opened[connection] = Opened(result, upstream, round((time.monotonic() - started) * 1000, 3))
        return None

    def _select_subprotocol(self, connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        opened = self._opened.get(connection)
        return opened.upstream.subprotocol if opened else None

    async def _process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> Response | None:
        opened = self._opened.get(connection)
        if opened is not None and response.status_code == OPENED:
            # Apache adds it to every other answer; a tunnel's 101 goes out as the relay wrote it.
            response.headers["X-Request-ID"] = opened.opening.attempt.request_id
            connection.connection_lost_waiter.add_done_callback(lambda _: self._abandoned(connection))
        if opened is not None and response.status_code != OPENED:
            # The client's handshake was invalid after all (no WebSocket key...): undo.
            del self._opened[connection]
            await opened.upstream.close()
            outcome = Outcome(status=response.status_code, upstream_status=OPENED, error=UpstreamError.GATEWAY_ERROR)
            await asyncio.to_thread(opened.opening.finish, outcome)
        return None

    def _abandoned(self, connection: ServerConnection) -> None:
        """The connection is gone: if its handler never ran (the client left between the 101
        and the first frame), close the upstream and record it."""
        opened = self._opened.pop(connection, None)
        if opened is not None:
            task = asyncio.ensure_future(self._finish_abandoned(opened))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _finish_abandoned(self, opened: Opened) -> None:
        await _close(opened.upstream, CloseCode.GOING_AWAY, "")
        outcome = _outcome(opened, Traffic(), ABNORMAL, UpstreamError.CLIENT_ABORTED, client_aborted=True)
        await asyncio.to_thread(opened.opening.finish, outcome)

    # --- The connection --------------------------------------------------------------------

    async def _handle(self, client: ServerConnection) -> None:
        opened = self._opened.pop(client, None)
        if opened is None:  # pragma: no cover - the handshake opened nothing
            return
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        traffic = Traffic()
        outcome = Outcome(status=OPENED, upstream_status=OPENED, error=UpstreamError.GATEWAY_ERROR)
        try:
            outcome = await self._relay(client, opened, traffic)
        finally:
            self._handlers.discard(task)
            await asyncio.to_thread(opened.opening.finish, outcome)

    async def _relay(self, client: ServerConnection, opened: Opened, traffic: Traffic) -> Outcome:
        upstream, target = opened.upstream, opened.opening.target
        pumps = {
            asyncio.create_task(_pump(client, upstream, traffic.sent, traffic)): client,
            asyncio.create_task(_pump(upstream, client, traffic.received, traffic)): upstream,
        }
        watch = asyncio.create_task(self._watch(traffic, target.websocket_idle_timeout, target.websocket_max_duration))
        try:
            done, _ = await asyncio.wait({*pumps, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch in done:
                error, code = watch.result()
                await _close_both(client, upstream, code, error)
                return _outcome(opened, traffic, code, error)
            ended = next(task for task in pumps if task in done).result()
            code, error = _ended(ended, client)
            other = upstream if ended is client else client
            await _close(other, _passable(code, ended is client), "")
            return _outcome(opened, traffic, code, error, client_aborted=error == UpstreamError.CLIENT_ABORTED)
        finally:
            for task in (*pumps, watch):
                task.cancel()
            await _close_both(client, upstream, CloseCode.GOING_AWAY, "")

    async def _watch(self, traffic: Traffic, idle: float, max_duration: float) -> tuple[str, int]:
        """What ends the connection if nobody closes it: silence, its age, the relay stopping."""
        assert self._stopping is not None
        end = time.monotonic() + max_duration
        while True:
            now = time.monotonic()
            if self._stopping.is_set():
                return UpstreamError.WEBSOCKET_GATEWAY_STOPPED, STOPPING_CLOSE
            if now >= end:
                return UpstreamError.WEBSOCKET_MAX_DURATION, MAX_DURATION_CLOSE
            if now - traffic.last >= idle:
                return UpstreamError.WEBSOCKET_IDLE_TIMEOUT, IDLE_CLOSE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(end, traffic.last + idle) - now)


# --- Helpers --------------------------------------------------------------------------------


def _offered(headers: Headers) -> list[Subprotocol]:
    return [p for value in headers.get_all("Sec-WebSocket-Protocol") for p in parse_subprotocol(value)]


def _response(answer: Answer) -> Response:
    try:
        reason = http.HTTPStatus(answer.status).phrase
    except ValueError:
        reason = "Error"
    return Response(answer.status, reason, Headers(answer.headers), answer.body)


async def _pump(source: Any, sink: Any, count: BodyCount, traffic: Traffic) -> Any:
    """Messages from ``source`` to ``sink`` until one of them closes; returns that one."""
    try:
        async for message in source:
            count.add(message.encode() if isinstance(message, str) else message)
            traffic.last = time.monotonic()
            try:
                await sink.send(message)
            except ConnectionClosed:
                return sink
    except ConnectionClosed:
        pass
    return source


def _ended(side: Any, client: ServerConnection) -> tuple[int, str]:
    """The close code ``side`` sent, or 1006 and the error when it vanished without one."""
    received = side.protocol.close_rcvd
    if received is not None:
        return received.code, ""
    return ABNORMAL, UpstreamError.CLIENT_ABORTED if side is client else UpstreamError.STREAM_BROKEN


def _passable(code: int, from_client: bool) -> int:
    """The code to pass on to the other side (1005, 1006 and the like cannot be sent)."""
    if code == ABNORMAL and not from_client:
        return UPSTREAM_BROKE
    return code if code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000 else CloseCode.NORMAL_CLOSURE


async def _close(connection: Any, code: int, reason: str) -> None:
    try:
        await connection.close(code, reason)
    except Exception:  # a side that is gone cannot be closed more
        logger.debug("closing a WebSocket failed", exc_info=True)


async def _close_both(client: Any, upstream: Any, code: int, reason: str) -> None:
    await asyncio.gather(_close(client, code, reason), _close(upstream, code, reason))


def _outcome(opened: Opened, traffic: Traffic, code: int, error: str, *, client_aborted: bool = False) -> Outcome:
    return Outcome(
        status=OPENED, upstream_status=OPENED, error=error, request=traffic.sent, response=traffic.received,
        ttfb_ms=opened.ttfb_ms, client_aborted=client_aborted, close_code=int(code),
    )  # fmt: skip


async def _open_upstream(opening: Opening, subprotocols: list[Subprotocol]) -> ClientConnection:
    """The upstream's WebSocket, through the SSRF guard: the connection goes to an address
    that was checked (``apps.gateway.ssrf``), as the HTTP gateway's urllib3 connections do."""
    target = opening.target
    parts = urlsplit(opening.url)
    secure = parts.scheme == "wss"
    host, port = parts.hostname or "", parts.port or (443 if secure else 80)
    try:
        resolve = ssrf.resolve if target.internal else ssrf.vetted_addresses
        infos = await asyncio.to_thread(resolve, host, port)
    except ssrf.Unresolvable:
        raise UpstreamFailure(UpstreamError.DNS_FAILED) from None
    except ssrf.ForbiddenAddress:
        raise UpstreamFailure(UpstreamError.ADDRESS_BLOCKED) from None
    sock = await _connected_socket(infos, target.connect_timeout)
    tls: dict[str, Any] = {"ssl": ssl.create_default_context(), "server_hostname": host} if secure else {}
    try:
        return await connect(
            opening.url, sock=sock, additional_headers=opening.upstream_headers, subprotocols=subprotocols or None,
            user_agent_header=None, compression=None, proxy=None, open_timeout=target.read_timeout,
            max_size=settings.WEBSOCKET_MAX_MESSAGE_BYTES, close_timeout=CLOSE_TIMEOUT,
            create_connection=_UpstreamConnection, **tls,
        )  # fmt: skip
    except InvalidStatus as exc:
        sock.close()
        raise UpstreamFailure(UpstreamError.INVALID_RESPONSE, exc.response.status_code) from None
    except ssl.SSLError:
        sock.close()
        raise UpstreamFailure(UpstreamError.TLS_FAILED) from None
    except TimeoutError:
        sock.close()
        raise UpstreamFailure(UpstreamError.READ_TIMEOUT) from None
    except InvalidHandshake:
        sock.close()
        raise UpstreamFailure(UpstreamError.INVALID_RESPONSE) from None
    except (OSError, EOFError):
        sock.close()
        raise UpstreamFailure(UpstreamError.RESET) from None


async def _connected_socket(infos: list[tuple[Any, ...]], timeout: float) -> socket.socket:
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
            return sock
        except TimeoutError:
            sock.close()
            raise UpstreamFailure(UpstreamError.CONNECT_TIMEOUT) from None
        except OSError as exc:
            sock.close()
            last = exc
    refused = isinstance(last, ConnectionRefusedError)
    raise UpstreamFailure(UpstreamError.REFUSED if refused else UpstreamError.UNREACHABLE)
