"""Receivers the SIEM tests stream to: a private rsyslogd, and an HTTPS webhook receiver.

Both listen on 127.0.0.1 with a certificate of a CA the test makes (``TestCA``).  The rsyslogd is
the test's own (``rsyslogd -n -f <its conf> -i <its pid file>``, its own work directory): the
system's rsyslog is never used, configured, restarted or stopped, and the test stops its own by
the PID it started."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from apps.core import webhooks

RSYSLOGD = "/usr/sbin/rsyslogd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class TestCA:
    """A CA and a server certificate for 127.0.0.1 and localhost, written under ``directory``."""

    __test__ = False  # not a test class, whatever its name

    directory: Path
    # The server certificate's names: by default the loopback address and localhost.
    names: tuple[str, ...] = ("localhost", "127.0.0.1")
    ca_file: Path = field(init=False)
    cert_file: Path = field(init=False)
    key_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auditgate test SIEM CA")])
        now = datetime.datetime.now(datetime.UTC)
        ca = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        names = [_general_name(name) for name in self.names]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        self.ca_file, self.cert_file, self.key_file = (self.directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        self.key_file.write_bytes(pem)
        self._ca_key = ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        os.chmod(self.key_file, 0o600)

    def client_cert(self, name: str = "auditgate-streamer") -> tuple[Path, Path]:
        """A client certificate of this CA and its key, as PEM files."""
        ca_key = serialization.load_pem_private_key(self._ca_key, None)
        ca = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )  # fmt: skip
        cert_file, key_file = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        return cert_file, key_file

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


_RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="256k"
       defaultNetstreamDriver="gtls" defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}" defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="{auth_mode}")
template(name="raw" type="string" string="{stamp}%rawmsg%\\n")
ruleset(name="capture") {{
  action(type="omfile" file="{out}" template="raw")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="capture")
"""


# When rsyslogd received the message, in seconds since the epoch with microseconds.
_STAMP = "%timegenerated:::date-unixtimestamp%.%timegenerated:::date-subseconds% "


class Rsyslog:
    """Debian's rsyslogd, run by the test: TLS (gtls) on 127.0.0.1:``port``, every message written
    raw, one a line, to ``received``."""

    def __init__(
        self, directory: Path, ca: TestCA, port: int | None = None, *, stamped: bool = False, client_certs: bool = False
    ) -> None:
        """``stamped``: each line starts with the time rsyslogd received the message (the bench's lag);
        ``client_certs``: only clients with a certificate of ``ca`` are taken (x509/certvalid)."""
        self.directory, self.ca, self.port = directory, ca, port or free_port()
        self.received = directory / "received.log"
        self.conf, self.pid_file = directory / "rsyslog.conf", directory / "rsyslog.pid"
        self.process: subprocess.Popen[bytes] | None = None
        (directory / "work").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            _RSYSLOG_CONF.format(
                work=directory / "work",
                ca=ca.ca_file,
                cert=ca.cert_file,
                key=ca.key_file,
                out=self.received,
                port=self.port,
                stamp=_STAMP if stamped else "",
                auth_mode="x509/certvalid" if client_certs else "anon",
            )
        )

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"

    def start(self) -> Rsyslog:
        log = (self.directory / "rsyslogd.out").open("ab")
        self.process = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.pid_file)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 10
        while not _accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rsyslogd did not start: {(self.directory / 'rsyslogd.out').read_text()}")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)
        self.process = None

    def lines(self) -> list[bytes]:
        return self.received.read_bytes().splitlines() if self.received.exists() else []

    def __enter__(self) -> Rsyslog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class WebhookReceiver:
    """An HTTPS receiver that checks each batch's signature and keeps its lines.

    ``mode``: "ok" answers 200; "fail" answers 500 (``failures`` times, then ok); "hang" reads
    nothing and never answers (a receiver that accepted the connection and went silent)."""

    def __init__(self, ca: TestCA, secret: bytes, port: int | None = None) -> None:
        self.ca, self.secret, self.port = ca, secret, port or free_port()
        self.mode, self.failures = "ok", 0
        self.batches: list[tuple[str, bytes]] = []  # (X-Auditgate-Batch, body) of accepted batches
        self.arrivals: list[tuple[float, bytes]] = []  # (time.time(), line) of accepted lines
        self.refused = 0
        self.bad_signatures = 0
        self._server: ThreadingHTTPServer | None = None
        self._hung: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/siem"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # the http.server's name
                receiver.handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._server.socket = self.ca.server_context().wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        if self.mode == "hang":
            self._hung.append(request.connection)
            while self.mode == "hang":
                time.sleep(0.05)
            return
        body = request.rfile.read(int(request.headers.get("Content-Length", 0)))
        if not webhooks.verify(self.secret, request.headers.get(webhooks.SIGNATURE_HEADER, ""), body):
            self.bad_signatures += 1
            self._answer(request, 401)
        elif self.mode == "fail" and self.failures > 0:
            self.failures -= 1
            self.refused += 1
            self._answer(request, 500)
        else:
            now = time.time()
            self.batches.append((request.headers.get("X-Auditgate-Batch", ""), body))
            self.arrivals.extend((now, line) for line in body.splitlines() if line)
            self._answer(request, 200)

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int) -> None:
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def lines(self) -> list[bytes]:
        return [line for _, line in self.arrivals]

    def stop(self) -> None:
        self.mode = "ok"
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
