#!/usr/bin/env python3
"""The upstreams of the chain and slow scenarios (standard library only; started by ``servers.py``).

``chain CONFIG``: upstream A of the chain (client -> proxy -> A -> proxy -> B).  A threaded HTTP/1.1
server: each request ``/<via>/<path>`` is answered by calling ``<base of via>/<path>`` over https,
on a keep-alive connection of its own thread, with the ``traceparent`` and ``tracestate`` it
received (what an OpenTelemetry-instrumented service passes on) and, for the gate, its own token.
It relays B's status and body; 502 if the nested call failed, 504 if it timed out.

``slow PORT DELAY``: an asyncio server that answers every request after DELAY seconds, on any
number of keep-alive connections at once.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import resource
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

BODY = b'{"id": 42, "name": "bench item", "tags": ["a", "b", "c"]}\n'
PASSED_ON = ("traceparent", "tracestate")


def allow_many_files() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- A: the middle of the chain ------------------------------------------------------------


class Nested:
    """Where a ``via`` sends its nested call, on one keep-alive connection per thread."""

    def __init__(self, base: str, token: str, context: ssl.SSLContext, timeout: float) -> None:
        url = urlsplit(base)
        self.host, self.port, self.prefix = url.hostname or "127.0.0.1", url.port or 443, url.path.rstrip("/")
        self.auth = {"Authorization": f"Token {token}"} if token else {}
        self.context, self.timeout = context, timeout
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPSConnection:
        if getattr(self.local, "connection", None) is None:
            self.local.connection = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=self.timeout
            )
        return self.local.connection

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """GET ``path`` of B; a keep-alive connection the proxy closed meanwhile is reopened once."""
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request("GET", self.prefix + path, headers={**headers, **self.auth})
                response = connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        connection, self.local.connection = getattr(self.local, "connection", None), None
        if connection is not None:
            connection.close()


class ChainHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    routes: dict[str, Nested] = {}

    def do_GET(self) -> None:  # the name http.server calls
        via, _, rest = self.path[1:].partition("/")
        nested = self.routes.get(via)
        if nested is None:
            self.answer(404, b'{"detail": "no such via"}\n')
            return
        passed = {name: self.headers[name] for name in PASSED_ON if self.headers[name]}
        try:
            status, body = nested.get("/" + rest, passed)
        except TimeoutError:
            self.answer(504, b'{"detail": "nested call timed out"}\n')
            return
        except OSError as exc:
            self.answer(502, json.dumps({"detail": f"nested call failed: {exc!r}"}).encode() + b"\n")
            return
        self.answer(status if status < 400 else 502, body)

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # the base class's names
        pass  # one line per request would cost more than the answer


class ChainServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a proxy that closed its connection
            super().handle_error(request, client_address)


def serve_chain(config_path: str) -> None:
    with open(config_path) as file:
        config = json.load(file)
    context = ssl.create_default_context(cafile=config["cafile"])
    ChainHandler.routes = {
        via: Nested(route["base"], route.get("token", ""), context, config["timeout"])
        for via, route in config["routes"].items()
    }
    with ChainServer(("127.0.0.1", config["port"]), ChainHandler) as server:
        server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server.serve_forever()


# --- the slow upstream ---------------------------------------------------------------------


def slow_response() -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    return head.encode() + BODY


async def serve_slow(port: int, delay: float) -> None:
    response = slow_response()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")  # GETs only: no body to read
                await asyncio.sleep(delay)
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    allow_many_files()
    if sys.argv[1:2] == ["chain"] and len(sys.argv) == 3:
        serve_chain(sys.argv[2])
    elif sys.argv[1:2] == ["slow"] and len(sys.argv) == 4:
        asyncio.run(serve_slow(int(sys.argv[2]), float(sys.argv[3])))
    else:
        sys.exit(f"usage: {sys.argv[0]} chain CONFIG | slow PORT DELAY")


if __name__ == "__main__":
    main()
