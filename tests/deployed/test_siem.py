"""Streaming the trail to a SIEM on the deployed host (apps.siem): real gateway traffic, the
deployed ``audit_stream`` (through auditgate-manage, as cron runs it) pointed at the test's own
rsyslogd (TLS, octet-counted) and at an HTTPS webhook receiver in this process.

Every event arrives (by id), checkpoints arrive and re-chain (``siem_verify``), a receiver stopped
and started mid-stream loses nothing, a streamer killed with SIGKILL resumes from its durable
cursor, a webhook answering 500 is retried, and a webhook that hangs never slows the gateway.
Each test streams under a cursor of its own and forgets it afterwards, so reruns are independent.
The system's rsyslog is never used: tests/siem/receivers.py runs one of the test's own.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.deployed.conftest import MANAGE, manage, manage_ok
from tests.deployed.load import call, percentiles
from tests.deployed.trail import gateway_events
from tests.siem.receivers import Rsyslog
from tests.tls import TestCA
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.deployed

SECRET = secrets.token_hex(16)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("siem-tls"))


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("siem-secret") / "webhook-secret"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


@pytest.fixture
def rsyslog(ca, tmp_path) -> Iterator[Rsyslog]:
    with Rsyslog(tmp_path / "rsyslog", ca) as receiver:
        yield receiver


@pytest.fixture
def hook(ca) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET.encode(), ca) as receiver:
        yield receiver


@pytest.fixture
def cursor_name() -> Iterator[str]:
    """A cursor name of the test's own (a sink's cursor is this name plus "s" or "w"), forgotten afterwards."""
    name = f"test-{secrets.token_hex(4)}"
    yield name
    for kind in ("syslog", "webhook"):
        manage("audit_stream", "--sink", kind, "--cursor", name + kind[0], "--forget")


def stream_args(kind: str, name: str, receiver, ca: TestCA, secret_file: Path) -> list[str]:
    args = ["audit_stream", "--sink", kind, "--cursor", name + kind[0], "--grace", "2"]
    if kind == "syslog":
        return [*args, "--syslog-url", receiver.url, "--syslog-ca-file", str(ca.ca_file)]
    return [*args, "--webhook-url", receiver.url, "--webhook-ca-file", str(ca.ca_file),
            "--webhook-secret-file", str(secret_file)]  # fmt: skip


def background(args: list[str]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.Popen([*MANAGE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def traffic(token: str, upstream: str, count: int) -> list[str]:
    """``count`` allowed and ``count`` denied gateway requests; their request ids."""
    ids = []
    for i in range(count):
        allowed, denied = call(token, f"/gw/{upstream}/allowed/{i}"), call(token, f"/gw/{upstream}/denied/{i}")
        assert (allowed.status, denied.status) == (200, 403)
        ids += [allowed.request_id, denied.request_id]
    return ids


def settled_ids(admin, upstream: str, expected: int) -> set[int]:
    """The ids of the upstream's gateway events, once every one is complete."""
    deadline = time.monotonic() + 15
    while True:
        events = gateway_events(admin, upstream)
        if (len(events) >= expected and all(e["completed_at"] for e in events)) or time.monotonic() > deadline:
            assert len(events) == expected
            return {e["id"] for e in events}
        time.sleep(0.2)


def received(lines: list[bytes]) -> tuple[set[int], set[int]]:
    """The event ids and checkpoint last_seqs in a capture."""
    events, checkpoints = set(), set()
    for line in lines:
        fields = orjson.loads(line.partition(b"\xef\xbb\xbf")[2] or line)
        if fields.get("type") == "checkpoint":
            checkpoints.add(fields["last_seq"])
        else:
            events.add(fields["id"])
    return events, checkpoints


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_every_event_and_the_checkpoints_reach_both_sinks_and_verify(
    admin, admin_token, registered_upstream, rsyslog, hook, ca, secret_file, cursor_name, tmp_path
):
    time.sleep(1.1)  # the gateway's caches see the new upstream
    traffic(admin_token, registered_upstream, 10)
    ids = settled_ids(admin, registered_upstream, 20)
    for kind, receiver in (("syslog", rsyslog), ("webhook", hook)):
        # From the start of the last checkpoint: a whole sealed segment, verifiable at once.
        args = stream_args(kind, cursor_name, receiver, ca, secret_file)
        manage_ok(*args, "--checkpoints-back", "1", "--once", "--seconds", "30", timeout=60)
    assert wait_until(lambda: ids <= received(rsyslog.lines())[0], 10), "an event never reached rsyslog"
    assert ids <= received(hook.lines())[0], "an event never reached the webhook"
    assert received(rsyslog.lines())[1] and received(hook.lines())[1], "no checkpoint arrived"
    assert hook.bad_signatures == 0
    # authpriv: notice (allowed), warning (denied), info (checkpoints)
    assert {line[:4] for line in rsyslog.lines()} >= {b"<85>", b"<84>", b"<86>"}
    capture = tmp_path / "webhook.ndjson"
    capture.write_bytes(b"\n".join(hook.lines()) + b"\n")
    for path in (rsyslog.received, capture):
        verdict = manage("siem_verify", str(path), "--database")
        assert verdict.returncode == 0, verdict.stdout + verdict.stderr
        assert "capture intact" in verdict.stdout and "signatures checked" in verdict.stdout


def test_a_streamer_killed_with_sigkill_resumes_from_its_durable_cursor(
    admin, admin_token, registered_upstream, hook, ca, secret_file, cursor_name
):
    time.sleep(1.1)
    args = stream_args("webhook", cursor_name, hook, ca, secret_file)
    streamer = background([*args, "--seconds", "60"])
    traffic(admin_token, registered_upstream, 5)
    first = settled_ids(admin, registered_upstream, 10)
    assert wait_until(lambda: first <= received(hook.lines())[0], 15)
    time.sleep(1)  # the cursor is written right after each acknowledged batch
    os.kill(streamer.pid, signal.SIGKILL)  # the PID is the streamer's own: auditgate-manage execs it
    streamer.wait(10)
    traffic(admin_token, registered_upstream, 5)
    every = settled_ids(admin, registered_upstream, 20)
    before = len(hook.lines())
    manage_ok(*args, "--once", "--seconds", "30", timeout=60)  # the lock died with the killed one's session
    assert every <= received(hook.lines())[0]
    resent = [seq for seq in received(hook.lines()[before:])[0] if seq in first]
    assert resent == [], "the rerun started from the durable cursor, not from the beginning"
    status = orjson.loads(manage_ok("audit_stream", "--status", "--cursor", cursor_name + "w"))[0]
    assert status["low_water"] >= max(every) or all(lo > max(every) for lo, _ in status["done"])


def test_receivers_stopped_mid_stream_lose_nothing(
    admin, admin_token, registered_upstream, rsyslog, hook, ca, secret_file, cursor_name
):
    time.sleep(1.1)
    streamers = [
        background([*stream_args("syslog", cursor_name, rsyslog, ca, secret_file), "--seconds", "45"]),
        background([*stream_args("webhook", cursor_name, hook, ca, secret_file), "--seconds", "45"]),
    ]
    try:
        traffic(admin_token, registered_upstream, 5)
        rsyslog.stop()  # SIGTERM to the test's own rsyslogd, by its PID
        hook.stop()  # the webhook's server goes away mid-stream
        traffic(admin_token, registered_upstream, 5)
        every = settled_ids(admin, registered_upstream, 20)
        time.sleep(2)  # the streamers fail a delivery or two and back off
        rsyslog.start()
        hook.start()
        assert wait_until(lambda: every <= received(rsyslog.lines())[0], 30), "rsyslog lost an event"
        assert wait_until(lambda: every <= received(hook.lines())[0], 30), "the webhook lost an event"
    finally:
        for streamer in streamers:
            streamer.send_signal(signal.SIGTERM)
            streamer.wait(20)


def test_a_hanging_webhook_never_slows_the_gateway_and_a_500_is_retried(
    admin, admin_token, registered_upstream, hook, ca, secret_file, cursor_name
):
    time.sleep(1.1)
    baseline = [call(admin_token, f"/gw/{registered_upstream}/allowed/b{i}").seconds for i in range(30)]
    hook.hang = True  # accepts, never reads, never answers
    streamer = background([*stream_args("webhook", cursor_name, hook, ca, secret_file), "--seconds", "50"])
    try:
        time.sleep(2)
        during = [call(admin_token, f"/gw/{registered_upstream}/allowed/h{i}") for i in range(30)]
        assert all(o.status == 200 for o in during)
        slow, fast = percentiles([o.seconds for o in during]), percentiles(baseline)
        assert slow["p50"] < fast["p50"] * 2 + 0.05, (slow, fast)
        hook.statuses = [500, 500, 200]
        hook.hang = False  # the hung delivery times out (10 s); the next two get 500s, then it recovers
        every = settled_ids(admin, registered_upstream, 60)
        assert wait_until(lambda: every <= received(hook.lines())[0], 35), "not delivered once it recovered"
        assert hook.refused == 2
    finally:
        hook.hang = False
        streamer.send_signal(signal.SIGTERM)
        streamer.wait(20)
