"""Where the stream goes: a syslog receiver over TLS, or an HTTPS webhook.

Both ``deliver`` a batch of lines and return only once the receiver has it, raising
``DeliveryFailed`` otherwise; the caller advances the durable cursor only after a return, so
delivery is at least once: after a failure the same lines go again (a receiver deduplicates by
``seq``, the event's id, or a checkpoint's ``last_seq``).

Syslog over plain TCP has no acknowledgement of its own.  A batch counts as delivered once the
receiver's TCP stack has acknowledged every byte (Linux ``TCP_INFO``: ``tcpi_unacked`` is 0):
the bytes left this host and reached the receiver's kernel.  A receiver that dies after that,
before writing them, loses them: RELP would close that window, at the price of a protocol
rsyslog speaks but most SIEMs do not.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import struct
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from apps.core.webhooks import DeliveryFailed, Webhook
from apps.siem import syslog
from apps.siem.lines import Line

__all__ = ["DeliveryFailed", "Sink", "SyslogSink", "WebhookSink"]

# struct tcp_info (linux/tcp.h): __u8 tcpi_state first, then seven more one-byte fields, then
# __u32 rto, ato, snd_mss, rcv_mss, unacked.
_TCPI_STATE_OFFSET, _TCPI_UNACKED_OFFSET = 0, 24
_TCP_ESTABLISHED = 1
_ACK_POLL_SECONDS = 0.005


class Sink(Protocol):
    kind: str

    def deliver(self, lines: list[Line]) -> None: ...

    def close(self) -> None: ...


@dataclass
class SyslogSink:
    """RFC 5424 over TLS (RFC 5425), octet-counted frames, one connection kept open."""

    url: str  # tls://host:port
    ca_file: str
    client_cert: str = ""
    client_key: str = ""
    facility: int = syslog.FACILITIES["authpriv"]
    timeout: float = 10.0
    kind: str = "syslog"

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme != "tls" or not parts.hostname or not parts.port:
            raise ValueError(f"a syslog URL is tls://host:port, not {self.url!r}")
        self.host, self.port = parts.hostname, parts.port
        self.hostname, self.procid = socket.gethostname(), os.getpid()
        self._socket: ssl.SSLSocket | None = None

    def deliver(self, lines: list[Line]) -> None:
        data = b"".join(
            syslog.frame(syslog.message(line, facility=self.facility, hostname=self.hostname, procid=self.procid))
            for line in lines
        )
        try:
            conn = self._connection()
            conn.sendall(data)
            _wait_until_acknowledged(conn, self.timeout)
            _check_still_open(conn)
        except (OSError, DeliveryFailed) as error:  # ssl.SSLError and timeouts are OSErrors
            self.close()
            raise DeliveryFailed(f"syslog {self.host}:{self.port}: {type(error).__name__}: {error}") from error

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.close()
            finally:
                self._socket = None

    def _connection(self) -> ssl.SSLSocket:
        if self._socket is not None and tcp_state(self._socket)[0] != _TCP_ESTABLISHED:
            self.close()  # the receiver closed it while we were idle: a new one, not a failed delivery
        if self._socket is None:
            context = tls_client_context(self.ca_file, self.client_cert, self.client_key)
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
            try:
                self._socket = context.wrap_socket(raw, server_hostname=self.host)
            except BaseException:
                raw.close()
                raise
        return self._socket


def tls_client_context(ca_file: str, client_cert: str = "", client_key: str = "") -> ssl.SSLContext:
    """The receiver's certificate checked against ``ca_file`` and the host name; TLS 1.2 or later."""
    context = ssl.create_default_context(cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert:
        context.load_cert_chain(client_cert, client_key or None)
    return context


def _wait_until_acknowledged(conn: socket.socket, timeout: float) -> None:
    """Until the peer's TCP stack has acknowledged every segment sent, on a connection still
    established: a reset purges the unacknowledged segments, and with them the count."""
    deadline = time.monotonic() + timeout
    while True:
        state, unacked = tcp_state(conn)
        if state != _TCP_ESTABLISHED:
            raise DeliveryFailed(f"the connection closed (TCP state {state}) before the receiver acknowledged it all")
        if not unacked:
            return
        if time.monotonic() > deadline:
            raise DeliveryFailed(f"the receiver did not acknowledge the bytes sent within {timeout} s")
        time.sleep(_ACK_POLL_SECONDS)


def _check_still_open(conn: ssl.SSLSocket) -> None:
    """A syslog receiver never writes back: anything to read is a TLS alert or the end of the
    connection (a receiver that refused our client certificate after the handshake, or closed),
    and its kernel may have acknowledged bytes the receiver threw away."""
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable and not conn.pending():
        return
    timeout = conn.gettimeout()
    conn.setblocking(False)
    try:
        conn.recv(1)
    except (ssl.SSLWantReadError, BlockingIOError):
        return  # a TLS record that held no data (a session ticket)
    finally:
        conn.settimeout(timeout)
    raise DeliveryFailed("the receiver closed the connection or sent an alert")


def tcp_state(conn: socket.socket) -> tuple[int, int]:
    """The connection's TCP state and the segments the peer has not acknowledged yet (Linux TCP_INFO)."""
    info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return info[_TCPI_STATE_OFFSET], int(struct.unpack_from("I", info, _TCPI_UNACKED_OFFSET)[0])


@dataclass
class WebhookSink:
    """NDJSON batches (``application/x-ndjson``) through ``apps.core.webhooks`` (HMAC-signed),
    each named by ``X-Auditgate-Batch: <first seq>-<last seq>-<lines>`` so a receiver can
    recognise a batch it already took."""

    hook: Webhook
    kind: str = "webhook"

    def deliver(self, lines: list[Line]) -> None:
        body = b"".join(line.body + b"\n" for line in lines)
        seqs = [line.seq for line in lines]
        name = f"{min(seqs)}-{max(seqs)}-{len(lines)}"
        self.hook.post(body, "application/x-ndjson", {"X-Auditgate-Batch": name})

    def close(self) -> None:
        pass
