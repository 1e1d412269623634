"""The HTTP client the gateway forwards with: urllib3 pools, with the SSRF guard at connect time.

One pair of PoolManagers per daemon process: connections are reused across
requests and threads (urllib3's pools are thread-safe).  Upstreams marked
``internal`` use the plain pools; all others use pools whose connections resolve
the host, refuse forbidden addresses (``apps.gateway.ssrf``) and connect to
exactly the address that was checked, so DNS rebinding cannot slip past.
"""

from __future__ import annotations

import socket

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from apps.gateway import ssrf


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


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


def _pool_manager(guarded: bool) -> urllib3.PoolManager:
    manager = urllib3.PoolManager(num_pools=100, maxsize=32, block=False, retries=False)
    if guarded:
        manager.pool_classes_by_scheme = {"http": GuardedHTTPConnectionPool, "https": GuardedHTTPSConnectionPool}
    return manager


_guarded = _pool_manager(guarded=True)
_internal = _pool_manager(guarded=False)


def pool_for(internal: bool) -> urllib3.PoolManager:
    return _internal if internal else _guarded
