"""Upstream and client faults on the deployed gateway: the right status, the right error in
the audit event, and no gateway thread held beyond its timeout."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.deployed.conftest import ACCESS_LOG, BASE_URL, CA_FILE, daemon_option
from tests.deployed.load import burst, call, group_capacity
from tests.deployed.trail import gateway_events
from tests.upstream import BlackholeServer, FullBacklogServer, ResetMidBodyServer, closed_port_url

pytestmark = pytest.mark.deployed

CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
BURST_HANDSHAKES = 3.0
HOLD = 5
SLACK = 1.5


def settled_events(admin, upstream: str, count: int) -> list[dict]:
    """Wait (briefly) until ``count`` gateway events of ``upstream`` have their outcome."""
    deadline = time.monotonic() + 10
    while True:
        events = gateway_events(admin, upstream)
        if (len(events) >= count and all(e["completed_at"] for e in events)) or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def all_threads_free(token: str, upstream: str) -> None:
    """A burst as large as the gateway group, each request holding its thread HOLD seconds, is
    served at once: with one thread still held, one request would wait for another (2 x HOLD).
    Timed by Apache (the access log's %D, from reading the request to the end of the answer,
    the wait for a daemon thread included), not by the client, whose burst of 512 TLS
    handshakes costs the 2-core host seconds."""
    outcomes = burst(group_capacity("GW"), lambda: call(token, f"/gw/{upstream}/slow?seconds={HOLD}", timeout=30))
    assert {o.status for o in outcomes} == {200}
    took = apache_durations({o.request_id for o in outcomes})
    assert max(took.values()) < 1.7 * HOLD, sorted(took.values())[-5:]


def apache_durations(request_ids: set[str]) -> dict[str, float]:
    """Seconds Apache logged for each request id (``%D ... %{UNIQUE_ID}e`` end each line)."""
    deadline = time.monotonic() + 5  # a line is written just after its answer went out
    while True:
        found: dict[str, float] = {}
        for line in ACCESS_LOG.read_text().splitlines()[-50_000:]:
            fields = line.rsplit(" ", 2)
            if len(fields) == 3 and fields[2] in request_ids:
                found[fields[2]] = int(fields[1]) / 1_000_000
        if found.keys() == request_ids or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found.keys() == request_ids, "every request is in the access log"
    return found


@pytest.mark.parametrize(
    ("server", "path", "status", "code", "seconds"),
    [
        (None, "/x", 502, "upstream_refused", 0),
        (FullBacklogServer, "/x", 504, "upstream_connect_timeout", CONNECT_TIMEOUT),
        (BlackholeServer, "/x", 504, "upstream_read_timeout", READ_TIMEOUT),
        ("echo", "/slow?seconds=5", 504, "upstream_read_timeout", READ_TIMEOUT),  # slow headers
    ],
    ids=["refused", "connect-timeout", "blackhole", "slow-headers"],
)
def test_an_upstream_fault_at_full_concurrency_times_out_on_time_and_frees_every_thread(
    admin, admin_token, register_upstream, upstream_server, server, path, status, code, seconds
):
    healthy = register_upstream("/")
    with server() if server not in (None, "echo") else _nothing() as faulty:
        url = {None: closed_port_url(), "echo": upstream_server.url}.get(server) or faulty.url
        name = register_upstream("/", base_url=url, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
        time.sleep(1.1)
        outcomes = burst(group_capacity("GW"), lambda: call(admin_token, f"/gw/{name}{path}", timeout=30))
    assert {(o.status, o.code) for o in outcomes} == {(status, code)}
    # As the client saw it: a burst of 512 new TLS connections at once costs the 2-core test
    # host a few seconds of handshakes before the requests are even sent.
    assert max(o.seconds for o in outcomes) < seconds + SLACK + BURST_HANDSHAKES
    all_threads_free(admin_token, healthy)
    events = settled_events(admin, name, len(outcomes))
    assert sorted((e["status"], e["error"]) for e in events) == [(status, code)] * len(outcomes)
    # As the gateway measured it, from the request's arrival: on time.
    assert max(e["duration_ms"] for e in events) < (seconds + SLACK) * 1000
    assert {e["request_id"] for e in events} == {o.request_id for o in outcomes}


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_an_upstream_that_resets_mid_body_cuts_the_answer_and_is_recorded(admin, admin_token, register_upstream):
    with ResetMidBodyServer(declared=1_000_000, sent=100_000) as server:
        name = register_upstream("/", base_url=server.url, read_timeout=READ_TIMEOUT)
        time.sleep(1.1)
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            admin.get(f"{BASE_URL}/gw/{name}/file", timeout=30).content  # noqa: B018
    (event,) = settled_events(admin, name, 1)
    assert (event["status"], event["upstream_status"], event["error"]) == (200, 200, "upstream_stream_broken")
    # What reached the client: whole blocks relayed before the reset (at most what was sent).
    assert 0 < event["response_bytes"] <= 100_000
    assert not event["client_aborted"]


def raw_connection() -> ssl.SSLSocket:
    url = urlsplit(BASE_URL)
    context = ssl.create_default_context(cafile=CA_FILE)
    return context.wrap_socket(socket.create_connection((url.hostname, url.port or 443), timeout=30),
                               server_hostname=url.hostname)  # fmt: skip


def test_a_client_that_leaves_mid_download_is_recorded_as_client_aborted(admin, admin_token, register_upstream):
    name = register_upstream("/")
    size = 200 * 1024 * 1024
    url = urlsplit(BASE_URL)
    conn = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=30,
                                       context=ssl.create_default_context(cafile=CA_FILE))  # fmt: skip
    conn.request("GET", f"/gw/{name}/chunked/{size}", headers={"Authorization": f"Token {admin_token}"})
    response = conn.getresponse()
    assert response.status == 200
    received = len(response.read(1024 * 1024))
    conn.sock.close()  # gone, without reading the rest
    conn.close()
    (event,) = settled_events(admin, name, 1)
    assert event["request_id"] == response.getheader("X-Request-ID")
    assert (event["client_aborted"], event["error"], event["status"]) == (True, "client_aborted", 200)
    assert received <= event["response_bytes"] < size


def test_a_client_that_leaves_mid_upload_is_recorded_as_client_aborted(admin, admin_token, register_upstream,
                                                                       upstream_server):  # fmt: skip
    name = register_upstream("/", max_request_bytes=100 * 1024 * 1024)
    declared, sent = 50 * 1024 * 1024, 1024 * 1024
    seen_before = len(upstream_server.server.seen)
    sock = raw_connection()
    head = (f"POST /gw/{name}/upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Token {admin_token}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n")  # fmt: skip
    sock.sendall(head.encode() + b"u" * sent)
    time.sleep(1)  # the gateway is streaming the body to the upstream
    sock.close()
    (event,) = settled_events(admin, name, 1)
    assert (event["client_aborted"], event["error"], event["status"]) == (True, "client_aborted", 499)
    assert 0 < event["request_bytes"] <= sent
    assert event["completed_at"]
    assert len(upstream_server.server.seen) <= seen_before + 1  # at most the cut-off request itself


def test_a_client_that_stops_reading_holds_its_thread_only_until_socket_timeout(admin, admin_token,
                                                                                  register_upstream):  # fmt: skip
    """A stalled reader blocks the daemon thread writing its answer; mod_wsgi's socket-timeout
    (apache/vhost.conf) frees it, and the event records the client as gone with what it got."""
    socket_timeout = float(daemon_option("auditgate-gw", "socket-timeout"))
    healthy = register_upstream("/")
    name = register_upstream("/")
    size = 2 * 1024 * 1024 * 1024
    sock = raw_connection()
    sock.sendall(f"GET /gw/{name}/chunked/{size} HTTP/1.1\r\nHost: localhost\r\n"
                 f"Authorization: Token {admin_token}\r\n\r\n".encode())  # fmt: skip
    sock.recv(65536)  # the answer started; from now on nothing is read
    stalled = time.monotonic()
    all_threads_free_but_one(admin_token, healthy)
    deadline = stalled + socket_timeout + 15
    events: list[dict] = []
    while time.monotonic() < deadline and not (events and events[0]["completed_at"]):
        time.sleep(1)
        events = gateway_events(admin, name)
    held = time.monotonic() - stalled
    sock.close()
    (event,) = events
    assert event["completed_at"], f"the thread was still held {held:.0f} s after the client stopped reading"
    assert held < socket_timeout + 15
    assert (event["client_aborted"], event["error"]) == (True, "client_aborted")
    assert 0 < event["response_bytes"] < size


def all_threads_free_but_one(token: str, upstream: str) -> None:
    outcomes = burst(group_capacity("GW") - 1, lambda: call(token, f"/gw/{upstream}/ok", timeout=10))
    assert {o.status for o in outcomes} == {200}
