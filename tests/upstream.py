"""A real HTTP upstream on loopback for the tests: echoes what it receives.

Paths with a behaviour:
- ``/redirect`` answers 302 to ``/elsewhere`` (the gateway must not follow it);
- ``/cookies`` sets two cookies (two ``Set-Cookie`` headers);
- ``/bytes/<n>`` answers ``n`` bytes;
- ``/slow?seconds=<s>`` waits before answering;
- ``/status/<code>`` answers that status;
- anything else answers JSON describing the request.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
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
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        self._send(200, json.dumps(echo).encode(), [("Content-Type", "application/json"), ("X-Upstream", "echo")])

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_any


class Upstream:
    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
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
