"""A webhook receiver for the tests: HTTPS on 127.0.0.1 with a certificate of its own (the hook
is given it as its CA file), checking each request's signature with ``apps.core.webhooks.verify``
as a real receiver would.  ``statuses`` are answered in turn (the last one repeats)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apps.core import webhooks


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def alert(self) -> dict[str, Any]:
        return json.loads(self.body)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = directory / "receiver.crt", directory / "receiver.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@dataclass
class Receiver:
    secret: bytes
    statuses: list[int] = field(default_factory=lambda: [200])
    received: list[Received] = field(default_factory=list)

    def __enter__(self) -> Receiver:
        self._dir = tempfile.TemporaryDirectory(prefix="auditgate-alert-receiver-")
        self.ca_file, key_file = _self_signed(Path(self._dir.name))
        self.ca_file.chmod(0o644)  # the deployed command (root) reads it; harmless either way
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                header = self.headers.get(webhooks.SIGNATURE_HEADER, "")
                receiver.received.append(
                    Received(dict(self.headers.items()), body, webhooks.verify(receiver.secret, header, body))
                )
                status = receiver.statuses[min(len(receiver.received), len(receiver.statuses)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, key_file)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._dir.cleanup()

    def alerts(self) -> list[dict[str, Any]]:
        return [r.alert for r in self.received if r.signature_ok]
