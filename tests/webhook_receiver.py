"""The webhook receiver the tests post to (alerts, the SIEM webhook sink, their deployed tests, the
SIEM bench): HTTPS on 127.0.0.1 in a thread of the test's process, checking each request's
signature with ``apps.core.webhooks.verify`` as a real receiver would.

Its certificate is of a ``TestCA``: the test's own (shared with its rsyslogd), or one the
receiver makes; the hook under test is given ``ca_file``.  It keeps every request it read, and
answers a bad signature 401 and a good one with ``statuses`` in turn (the last one repeats);
``hang`` makes it accept requests and never answer.  It keeps its port across ``stop`` and
``start``, so a hook sees the same receiver go away and come back."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from apps.core import webhooks
from tests.tls import TestCA, free_port


@dataclass
class Received:
    at: float  # time.time() when it was read
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    status: int  # what the receiver answered

    @property
    def accepted(self) -> bool:
        return self.signature_ok and 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)

    def lines(self) -> list[bytes]:
        """The NDJSON lines of the body."""
        return [line for line in self.body.splitlines() if line]


class WebhookReceiver:
    def __init__(self, secret: bytes, ca: TestCA | None = None) -> None:
        self.secret, self.port = secret, free_port()
        self._own_ca: tempfile.TemporaryDirectory[str] | None = None
        if ca is None:
            self._own_ca = tempfile.TemporaryDirectory(prefix="auditgate-webhook-receiver-")
            ca = TestCA(Path(self._own_ca.name))
        self.ca = ca
        self.statuses = [200]
        self.hang = False
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/hook"

    @property
    def ca_file(self) -> Path:
        return self.ca.ca_file

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # the http.server's name
                receiver._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.socket = self.ca.server_context().wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.hang = False  # lets a hung request's thread end
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_ca is not None:
            self._own_ca.cleanup()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        if self.hang:  # accepted the connection, then silence: nothing read, nothing answered
            while self.hang:
                time.sleep(0.05)
            return
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        signed = webhooks.verify(self.secret, request.headers.get(webhooks.SIGNATURE_HEADER, ""), body)
        with self._lock:
            status = self._next_status() if signed else 401
            self.received.append(Received(time.time(), dict(request.headers.items()), body, signed, status))
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def _next_status(self) -> int:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    # --- what arrived ---------------------------------------------------------------------

    def accepted(self) -> list[Received]:
        """The requests signed correctly and answered 2xx: what the hook counts as delivered."""
        return [r for r in self.received if r.accepted]

    def documents(self) -> list[Any]:
        """The accepted bodies, each one JSON document (an alert)."""
        return [r.json() for r in self.accepted()]

    def lines(self) -> list[bytes]:
        """The accepted bodies' NDJSON lines (the SIEM stream), in order of arrival."""
        return [line for r in self.accepted() for line in r.lines()]

    @property
    def bad_signatures(self) -> int:
        return sum(not r.signature_ok for r in self.received)

    @property
    def refused(self) -> int:
        """Requests signed correctly and answered with an error."""
        return sum(r.signature_ok and not r.accepted for r in self.received)
