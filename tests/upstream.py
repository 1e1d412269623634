"""A real HTTP upstream on loopback for the tests: echoes what it receives.

Paths with a behaviour:
- ``/redirect`` answers 302 to ``/elsewhere`` (the gateway must not follow it);
- ``/cookies`` sets two cookies (two ``Set-Cookie`` headers);
- ``/bytes/<n>`` answers ``n`` bytes;
- ``/slow?seconds=<s>`` waits before answering;
- ``/status/<code>`` answers that status;
- ``/redirect-absolute`` answers 302 to an absolute URL on this server;
- ``/chunked/<n>`` answers ``n`` bytes chunked, without a Content-Length;
- ``/gzip`` answers a gzip-encoded body (``Content-Encoding: gzip``);
- ``/hop-headers`` answers with hop-by-hop headers that a proxy must drop;
- anything else answers JSON describing the request.

Every request's method and path are appended to ``server.seen`` (and its arrival time to
``server.arrivals``), so a test can prove that something did *not* reach the upstream.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import select
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, urlsplit


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-upstream"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self) -> None:
        self.server.seen.append((self.command, self.path))
        self.server.arrivals.append(time.monotonic())
        self.large_body: tuple[int, str] | None = None  # One handler serves a whole keep-alive connection.
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked_body()
        else:
            body = self._read_body(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        if url.path == "/redirect-absolute":
            port = self.server.server_address[1]
            return self._send(302, b"", [("Location", f"http://127.0.0.1:{port}/elsewhere?x=1")])
        if url.path.startswith("/chunked/"):
            return self._send_chunked(int(url.path.rsplit("/", 1)[1]))
        if url.path == "/gzip":
            return self._send(200, GZIPPED, [("Content-Encoding", "gzip"), ("Content-Type", "text/plain")])
        if url.path == "/hop-headers":
            hop = [("Connection", "X-Private-Hop"), ("X-Private-Hop", "1"), ("Keep-Alive", "timeout=5"),
                   ("Proxy-Authenticate", "Basic"), ("Trailer", "X-T"), ("Upgrade", "h2c")]  # fmt: skip
            return self._send(200, b"ok", [*hop, ("X-Kept", "yes")])
        if url.path == "/redirect":
            return self._send(302, b"", [("Location", "/elsewhere")])
        if url.path == "/cookies":
            return self._send(200, b"ok", [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")])
        if url.path.startswith("/bytes/"):
            size = int(url.path.rsplit("/", 1)[1])
            return self._send(200, bytes(i % 251 for i in range(size)), [("Content-Type", "application/octet-stream")])
        if url.path == "/slow":
            time.sleep(float(parse_qs(url.query).get("seconds", ["1"])[0]))
        if url.path.startswith("/status/"):
            return self._send(int(url.path.rsplit("/", 1)[1]), b"", [])
        echo = {
            "method": self.command,
            "path": url.path,
            "query": url.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "header_lines": [[k, v] for k, v in self.headers.items()],  # repeated names included
            "body_length": self.large_body[0] if self.large_body else len(body),
            "body_sha256": self.large_body[1] if self.large_body else hashlib.sha256(body).hexdigest(),
        }
        self._send(200, json.dumps(echo).encode(), [("Content-Type", "application/json"), ("X-Upstream", "echo")])

    def _read_chunked_body(self) -> bytes:
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()  # the empty trailer section
                return body
            body += self.rfile.read(size)
            self.rfile.readline()  # the chunk's CRLF

    def _read_body(self, length: int) -> bytes:
        """Read the body in blocks; bodies over 1 MiB are hashed and counted, not kept."""
        if length <= 1024 * 1024:
            return self.rfile.read(length) if length else b""
        digest, remaining = hashlib.sha256(), length
        while remaining:
            block = self.rfile.read(min(remaining, 1024 * 1024))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
        self.large_body = (length - remaining, digest.hexdigest())
        return b""

    def _send_chunked(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        while sent < size:
            block = b"z" * min(65536, size - sent)
            self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            sent += len(block)
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_any


GZIPPED = gzip.compress(b"compressed body " * 100, mtime=0)


class _BackloggedServer(ThreadingHTTPServer):
    # socketserver's default listen backlog (5) drops connections in a burst (of up to 512 gateway threads).
    request_queue_size = 2048


class Upstream:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.server = _BackloggedServer((host, 0), EchoHandler)
        self.server.daemon_threads = True
        self.server.seen = []
        self.server.arrivals = []  # time.monotonic() of each request's arrival
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (for 'unreachable upstream')."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class _RawServer:
    """A listening socket on loopback whose accept loop hands each connection to ``handle``."""

    def __init__(self) -> None:
        # A backlog for a burst from every gateway thread (512 at level 0): with less, the
        # connections past it wait on SYN retries and a fault test sees connect timeouts.
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.handle(conn)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


class ResettingServer(_RawServer):
    """Accepts connections and closes them at once (an upstream that resets)."""

    def handle(self, conn: socket.socket) -> None:
        conn.recv(1024)
        conn.close()


class FullBacklogServer:
    """A listening socket that never accepts, its backlog filled: new connects time out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._fillers: list[socket.socket] = []

    def __enter__(self) -> FullBacklogServer:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(self.sock.getsockname())
            self._fillers.append(filler)
        time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        for filler in self._fillers:
            filler.close()
        self.sock.close()


class CallbackHandler(BaseHTTPRequestHandler):
    """Before answering, calls back into auditgate: the nested request of the seed story.

    ``server.callback(handler)`` makes that call and returns (status, seconds); the answer is
    JSON ``{"callback_status": ..., "callback_seconds": ...}`` with status 200 when the
    callback got a 200 and 502 otherwise.
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, seconds = self.server.callback(self)
        body = json.dumps({"callback_status": status, "callback_seconds": seconds}).encode()
        self.send_response(200 if status == 200 else 502)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = handle_any


class CallbackUpstream(Upstream):
    """An upstream on loopback whose every answer waits for a call back into auditgate."""

    def __init__(self, callback) -> None:
        self.server = _BackloggedServer(("127.0.0.1", 0), CallbackHandler)
        self.server.daemon_threads = True
        self.server.callback = callback
        self.server.seen = []
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)


class TLSRelay(_RawServer):
    """Plain TCP on loopback in, TLS to ``host:port`` out, bytes passed untouched both ways.

    Lets the gateway reach the deployment's own https vhost, whose self-signed certificate
    the daemons do not trust: an upstream "pointing at the gateway itself".  One thread per
    connection moves both directions with non-blocking sockets (an SSL socket must not be
    read and written from two threads at once).
    """

    def __init__(self, host: str, port: int, cafile: str) -> None:
        super().__init__()
        self._target = (host, port)
        self._context = ssl.create_default_context(cafile=cafile)

    def handle(self, conn: socket.socket) -> None:
        threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, inbound: socket.socket) -> None:
        try:
            raw = socket.create_connection(self._target, timeout=10)
            outbound = self._context.wrap_socket(raw, server_hostname=self._target[0])
        except OSError:
            inbound.close()
            return
        try:
            _shuttle(inbound, outbound)
        finally:
            for end in (inbound, outbound):
                with contextlib.suppress(OSError):
                    end.close()


_WOULD_BLOCK = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError)


def _shuttle(inbound: socket.socket, outbound: ssl.SSLSocket, idle: float = 120) -> None:
    """Copy bytes both ways until either side closes or nothing moves for ``idle`` seconds."""
    peer = {inbound: outbound, outbound: inbound}
    waiting: dict[socket.socket, bytes] = {inbound: b"", outbound: b""}  # bytes to write to each
    for end in peer:
        end.setblocking(False)
    try:
        while True:
            buffered = [outbound] if outbound.pending() else []
            writable = [end for end, data in waiting.items() if data]
            readable, ready, _ = select.select(list(peer), writable, [], 0 if buffered else idle)
            if not (readable or ready or buffered):
                return
            for source in {*readable, *buffered}:
                try:
                    data = source.recv(65536)
                except _WOULD_BLOCK:
                    continue
                if not data:  # one side is done: deliver what it sent, then close both
                    sink = peer[source]
                    sink.setblocking(True)
                    sink.sendall(waiting[sink])
                    return
                waiting[peer[source]] += data
            for sink, data in waiting.items():
                if data:
                    with contextlib.suppress(*_WOULD_BLOCK):
                        waiting[sink] = data[sink.send(data) :]
    except OSError:
        return


class BlackholeServer(_RawServer):
    """Accepts connections and reads the request, then never answers."""

    def __init__(self) -> None:
        super().__init__()
        self._held: list[socket.socket] = []

    def handle(self, conn: socket.socket) -> None:
        self._held.append(conn)

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        for conn in self._held:
            conn.close()


class ResetMidBodyServer(_RawServer):
    """Answers 200 with a Content-Length of ``declared`` bytes, sends ``sent`` of them, then resets."""

    def __init__(self, declared: int = 1_000_000, sent: int = 100_000) -> None:
        super().__init__()
        self.declared, self.sent = declared, sent

    def handle(self, conn: socket.socket) -> None:
        conn.recv(65536)
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {self.declared}\r\n\r\n"
        conn.sendall(head.encode() + b"r" * self.sent)
        time.sleep(0.2)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
        conn.close()


class ScriptedServer(_RawServer):
    """Answers every request with ``reply``, exactly as written: the bytes an HTTP library would
    never produce (a status of 777, a bare CR in a header, 1xx before the answer...).

    ``reply`` is bytes, or a list of (bytes, seconds to wait before sending them) for an
    upstream that trickles.  The request heads received are kept in ``requests``.
    """

    def __init__(self, reply: bytes | list[tuple[bytes, float]]) -> None:
        super().__init__()
        self.parts = [(reply, 0.0)] if isinstance(reply, bytes) else reply
        self.requests: list[bytes] = []

    def handle(self, conn: socket.socket) -> None:
        threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            self.requests.append(head.split(b"\r\n\r\n", 1)[0])
            try:
                for data, delay in self.parts:
                    time.sleep(delay)
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
                conn.recv(1)
            except OSError:
                return  # the gateway gave up on us
