"""The HTTP client the gateway forwards with: urllib3 pools, with the SSRF guard at connect time.

One pair of PoolManagers per daemon process: connections are reused across
requests and threads (urllib3's pools are thread-safe).  Upstreams marked
``internal`` use the plain pools; all others use pools whose connections resolve
the host, refuse forbidden addresses (``apps.gateway.ssrf``) and connect to
exactly the address that was checked, so DNS rebinding cannot slip past.
"""

from __future__ import annotations

import http.client
import re
import socket
from collections import deque

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from apps.gateway import ssrf


class InvalidUpstreamResponse(http.client.HTTPException):
    """The upstream's status line or headers cannot be relayed faithfully (the message says why)."""


# RFC 9110 5.1 / RFC 9112 5: a field line is a token, a colon, then visible characters,
# spaces and tabs.  http.client is lenient where a proxy must not be: it reads a bare CR as a
# line break (the email parser), which would turn one upstream header into two at the client.
_FIELD_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*\Z")


class _Replay:
    """Header lines already read and checked, handed to http.client's header parser."""

    def __init__(self, lines: list[bytes]):
        self._lines = deque(lines)

    def readline(self, limit: int = -1) -> bytes:
        return self._lines.popleft() if self._lines else b""


class StrictResponse(http.client.HTTPResponse):
    """http.client's response, as strict as a relay needs.

    - Interim responses (1xx, e.g. 103 Early Hints) are skipped until the final one: the
      gateway cannot relay them through WSGI, and the final answer follows them on the wire.
      A 101 is refused: the gateway never asks to switch protocols.
    - A final status outside 200-599 is refused (http.client accepts 100-999).
    - Header lines are checked on the raw bytes, before http.client parses them: no CR, LF
      or NUL inside a line, no obsolete line folding, names that are tokens.
    """

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]  # private, stable in 3.11
            if status == 101:
                raise InvalidUpstreamResponse("101 Switching Protocols without an upgrade request")
            if not 100 <= status < 200:
                break
            http.client._read_headers(self.fp)  # type: ignore[attr-defined]  # an interim response's headers
        if not 200 <= status <= 599:
            raise InvalidUpstreamResponse(f"status {status} outside 200-599")
        self._original_fp = self.fp
        self.fp = _Replay(self._checked_header_lines())  # type: ignore[assignment]
        return version, status, reason

    def _checked_header_lines(self) -> list[bytes]:
        lines = http.client._read_headers(self._original_fp)  # type: ignore[attr-defined]  # with the blank line
        if not lines or lines[-1] not in (b"\r\n", b"\n"):
            raise InvalidUpstreamResponse("header section cut off")
        for line in lines[:-1]:
            content = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if not _FIELD_LINE.match(content):
                raise InvalidUpstreamResponse("malformed header line (control character, folding or bad name)")
        return lines

    def begin(self) -> None:
        try:
            super().begin()
        finally:
            if getattr(self, "_original_fp", None) is not None:
                self.fp = self._original_fp  # the body is read from the socket again
                self._original_fp = None  # type: ignore[assignment]


class _GuardedConnectionMixin:
    host: str
    port: int
    timeout: float | None
    socket_options: list | None

    def _new_conn(self) -> socket.socket:
        infos = ssrf.vetted_addresses(self._dns_host, self.port)  # type: ignore[attr-defined]
        last_error: OSError | None = None
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(self.timeout)
                sock.connect(sockaddr)
                return sock
            except TimeoutError as exc:
                sock.close()
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from exc
            except OSError as exc:
                sock.close()
                last_error = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {last_error}")  # type: ignore[arg-type]


class StrictHTTPConnection(HTTPConnection):
    response_class = StrictResponse


class StrictHTTPSConnection(HTTPSConnection):
    response_class = StrictResponse


class GuardedHTTPConnection(_GuardedConnectionMixin, StrictHTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnectionMixin, StrictHTTPSConnection):
    pass


class StrictHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = StrictHTTPConnection


class StrictHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = StrictHTTPSConnection


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


def _threads_per_process() -> int:
    """Threads of this mod_wsgi daemon process (32 outside one): each may hold a connection."""
    try:
        import mod_wsgi  # type: ignore[import-untyped]  # its threads_per_process: only in a daemon
    except ImportError:
        return 32
    return max(int(getattr(mod_wsgi, "threads_per_process", 32) or 32), 1)


def _pool_manager(guarded: bool) -> urllib3.PoolManager:
    # One idle connection kept per thread and upstream host: a smaller pool discards
    # connections under load and every request pays a new connect.
    manager = urllib3.PoolManager(num_pools=100, maxsize=_threads_per_process(), block=False, retries=False)
    if guarded:
        manager.pool_classes_by_scheme = {"http": GuardedHTTPConnectionPool, "https": GuardedHTTPSConnectionPool}
    else:
        manager.pool_classes_by_scheme = {"http": StrictHTTPConnectionPool, "https": StrictHTTPSConnectionPool}
    return manager


_guarded = _pool_manager(guarded=True)
_internal = _pool_manager(guarded=False)


def pool_for(internal: bool) -> urllib3.PoolManager:
    return _internal if internal else _guarded
