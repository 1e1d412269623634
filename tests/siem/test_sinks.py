"""The sinks against real receivers: Debian's rsyslogd (the test's own) and an HTTPS webhook."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from datetime import timedelta

import pytest

from apps.core.webhooks import Webhook
from apps.siem.capture import verify_capture
from apps.siem.sinks import DeliveryFailed, SyslogSink, WebhookSink
from apps.siem.streaming import Options, Streamer
from tests.siem.receivers import RSYSLOGD, Rsyslog
from tests.tls import TestCA
from tests.webhook_receiver import WebhookReceiver

SECRET = b"siem-test-webhook-secret"
OPTIONS = Options(grace=timedelta(seconds=5), max_lines=50)


@pytest.fixture
def rsyslogd_installed() -> None:
    """Fails, never skips: ``make test`` installs Debian's rsyslog, and a receiver test that did
    not run must not count as passed."""
    if shutil.which(RSYSLOGD) is None:
        pytest.fail("rsyslogd is missing: `make test` installs it (apt-get install rsyslog rsyslog-gnutls)")


needs_rsyslog = pytest.mark.usefixtures("rsyslogd_installed")


@pytest.fixture
def ca(tmp_path):
    return TestCA(tmp_path / "tls")


def stream(name: str, sink, options: Options = OPTIONS, **kwargs) -> None:
    Streamer(name, sink, options, sleep=lambda s: time.sleep(min(s, 0.2))).run(**kwargs)


def received_seqs(lines: list[bytes]) -> list[int]:
    import orjson

    from apps.siem.capture import json_of

    return [orjson.loads(json_of(line)).get("id") for line in lines]


def wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@needs_rsyslog
def test_rsyslog_receives_every_event_once_and_the_frames_it_parsed_are_rfc_5424(event, ca, tmp_path):
    for seq in range(1, 121):
        event(seq, event_type="gateway.denied" if seq % 3 == 0 else "gateway.request")
    with Rsyslog(tmp_path / "rsyslog", ca) as receiver:
        stream("syslog-a", SyslogSink(receiver.url, str(ca.ca_file)), seconds=10, once=True)
        wait_for(lambda: len(receiver.lines()) == 120)
    lines = receiver.lines()
    assert sorted(received_seqs(lines)) == list(range(1, 121))
    assert lines[0].startswith(b"<85>1 ") and b" auditgate " in lines[0] and b'[auditgate@32473 seq="1"' in lines[0]
    assert lines[2].startswith(b"<84>1 "), "a denial is a warning"


@needs_rsyslog
def test_a_receiver_restarted_mid_stream_loses_nothing(event, ca, tmp_path):
    for seq in range(1, 201):
        event(seq)
    receiver = Rsyslog(tmp_path / "rsyslog", ca).start()
    sink = SyslogSink(receiver.url, str(ca.ca_file), timeout=2)
    runner = Streamer("syslog-b", sink, Options(grace=timedelta(seconds=5), max_lines=40), sleep=time.sleep)
    with runner.lock.holding(wait=0):
        cursor = runner._cursor()
        assert runner.step(cursor) == 40
        receiver.stop()  # SIGTERM: it writes what it acknowledged, then exits
        assert runner.step(cursor) is None, "nobody listens: the delivery fails, the cursor stays"
        receiver.start()
        while runner.step(cursor) != 0:
            pass
    wait_for(lambda: len(set(received_seqs(receiver.lines()))) == 200)
    receiver.stop()
    assert cursor.low_water == 200


@needs_rsyslog
def test_a_certificate_of_another_ca_or_name_is_refused(event, ca, tmp_path):
    event(1)
    other = TestCA(tmp_path / "other")
    with Rsyslog(tmp_path / "rsyslog", ca) as receiver, pytest.raises(DeliveryFailed, match="CERTIFICATE_VERIFY"):
        SyslogSink(receiver.url, str(other.ca_file)).deliver([])
    named_otherwise = TestCA(tmp_path / "named", names=("siem.example.org",))
    with (
        Rsyslog(tmp_path / "rsyslog2", named_otherwise) as receiver,
        pytest.raises(DeliveryFailed, match="IP address mismatch"),
    ):
        SyslogSink(receiver.url, str(named_otherwise.ca_file)).deliver([])


def test_a_receiver_that_accepts_and_never_reads_times_the_delivery_out(ca):
    """The TCP window fills, and nothing is acknowledged: a failure, never a hang."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept_and_handshake() -> None:
        conn, _ = listener.accept()
        tls = ca.server_context().wrap_socket(conn, server_side=True)
        accepted.append(tls)  # and never read

    threading.Thread(target=accept_and_handshake, daemon=True).start()
    from apps.siem.lines import Line

    line = Line("event", 1, b'{"id":1,"pad":"' + b"x" * 60000 + b'"}', {"id": 1, "event_type": "gateway.request"})
    sink = SyslogSink(f"tls://127.0.0.1:{listener.getsockname()[1]}", str(ca.ca_file), timeout=1)
    started = time.monotonic()
    with pytest.raises(DeliveryFailed):
        sink.deliver([line] * 200)
    assert time.monotonic() - started < 5
    listener.close()


def test_the_webhook_gets_signed_ndjson_batches_named_by_their_ids(event, ca):
    for seq in range(1, 8):
        event(seq)
    with WebhookReceiver(SECRET, ca) as receiver:
        sink = WebhookSink(Webhook(receiver.url, SECRET, str(ca.ca_file)))
        Streamer("hook-a", sink, Options(grace=timedelta(seconds=5), max_lines=4)).run(seconds=5, once=True)
    assert [r.headers["X-Auditgate-Batch"] for r in receiver.accepted()] == ["1-4-4", "5-7-3"]
    assert receiver.bad_signatures == 0
    assert received_seqs(receiver.lines()) == list(range(1, 8))


def test_a_webhook_answering_500_is_retried_with_backoff_and_nothing_is_lost(event, ca, tmp_path):
    for seq in range(1, 6):
        event(seq)
    waits: list[float] = []
    with WebhookReceiver(SECRET, ca) as receiver:
        receiver.statuses = [500, 500, 500, 200]
        sink = WebhookSink(Webhook(receiver.url, SECRET, str(ca.ca_file)))
        Streamer("hook-b", sink, OPTIONS, sleep=waits.append).run(seconds=5)
    assert receiver.refused == 3
    assert waits[:3] == [0.5, 1.0, 2.0]
    assert received_seqs(receiver.lines()) == [1, 2, 3, 4, 5]


def test_a_hanging_webhook_fails_the_delivery_at_its_timeout(event, ca):
    event(1)
    with WebhookReceiver(SECRET, ca) as receiver:
        receiver.hang = True
        sink = WebhookSink(Webhook(receiver.url, SECRET, str(ca.ca_file), timeout=0.5))
        from apps.siem.lines import event_lines

        with pytest.raises(DeliveryFailed):
            sink.deliver(event_lines([1]))


@needs_rsyslog
def test_a_capture_of_both_sinks_verifies_against_the_checkpoints(event, ca, tmp_path, settings):
    from apps.audit import sealing

    settings.AUDIT_SEAL_KEYS, settings.AUDIT_SEAL_KEY_ID, settings.AUDIT_CHECKPOINT_FILE = {"1": "s" * 32}, "1", ""
    for seq in (1, 2, 4, 5, 6):
        event(seq)
    sealing.seal(grace=timedelta(0))
    back = Options(grace=timedelta(seconds=5), checkpoints_back=1)  # a new cursor starts after the last one
    with Rsyslog(tmp_path / "rsyslog", ca) as rsyslog, WebhookReceiver(SECRET, ca) as hook:
        stream("syslog-c", SyslogSink(rsyslog.url, str(ca.ca_file)), back, seconds=5, once=True)
        stream("hook-c", WebhookSink(Webhook(hook.url, SECRET, str(ca.ca_file))), back, seconds=5, once=True)
        wait_for(lambda: len(rsyslog.lines()) == 6)
    (tmp_path / "hook.ndjson").write_bytes(b"\n".join(hook.lines()) + b"\n")
    for capture in (rsyslog.received, tmp_path / "hook.ndjson"):
        report = verify_capture([capture], keys={"1": "s" * 32})
        assert report.ok, report.problems
        assert report.events_verified == 5


def test_a_receiver_gone_after_a_delivery_fails_the_next_one_instead_of_counting_it_acknowledged(ca):
    """A reset purges the unacknowledged segments, and their count with them: the connection's
    state is checked too, and a closed one is never taken for an acknowledgement."""
    from apps.siem.lines import Line

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    got = []
    delivered = threading.Event()

    def serve_once() -> None:
        conn, _ = listener.accept()
        tls = ca.server_context().wrap_socket(conn, server_side=True)
        got.append(tls.recv(65536))
        delivered.wait(5)
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        tls.close()  # a reset, then nobody listens
        listener.close()

    threading.Thread(target=serve_once, daemon=True).start()
    line = Line("event", 1, b'{"id":1}', {"id": 1, "event_type": "gateway.request"})
    sink = SyslogSink(f"tls://127.0.0.1:{port}", str(ca.ca_file), timeout=2)
    sink.deliver([line])
    delivered.set()
    wait_for(lambda: got)
    time.sleep(0.2)
    with pytest.raises(DeliveryFailed):
        sink.deliver([line])


@needs_rsyslog
def test_a_receiver_that_requires_a_client_certificate_gets_ours_and_refuses_none(event, ca, tmp_path):
    for seq in (1, 2, 3):
        event(seq)
    cert, key = ca.client_cert()
    with Rsyslog(tmp_path / "rsyslog", ca, client_certs=True) as receiver:
        from apps.siem.lines import event_lines

        lines = event_lines([1, 2, 3])
        with pytest.raises(DeliveryFailed):
            anonymous = SyslogSink(receiver.url, str(ca.ca_file), timeout=2)
            for _ in range(3):  # the refusal may come a moment after the handshake
                anonymous.deliver(lines)
                time.sleep(0.2)
        SyslogSink(receiver.url, str(ca.ca_file), client_cert=str(cert), client_key=str(key)).deliver(lines)
        wait_for(lambda: len(receiver.lines()) == 3)
    assert sorted(received_seqs(receiver.lines())) == [1, 2, 3], "nothing of the refused client was written"
