"""The rsyslogd the SIEM tests stream to (the webhook receiver is ``tests.webhook_receiver``).

It listens on 127.0.0.1 with a certificate of a CA the test makes (``tests.tls.TestCA``), and is
the test's own (``rsyslogd -n -f <its conf> -i <its pid file>``, its own work directory): the
system's rsyslog is never used, configured, restarted or stopped, and the test stops its own by
the PID it started."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.tls import TestCA, free_port

RSYSLOGD = "/usr/sbin/rsyslogd"

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
