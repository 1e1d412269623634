"""WebSockets through /gw/: the relay (apps.gateway.wsrelay) with a real ``websockets`` client,
as Apache hands it the handshake (its trusted headers), and a real upstream WebSocket server
on loopback.  The database is the real test database (the relay writes from its threads)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, unix_connect

from apps.audit.models import AuditEvent
from apps.audit.reconciling import reconcile
from apps.gateway import identity
from apps.gateway.models import AccessRule, Upstream
from apps.gateway.wsrelay import WebSocketRelay

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class EchoUpstream:
    """A WebSocket server on loopback: echoes, remembers each handshake's headers, and obeys
    ``close <code>`` and ``silence``."""

    url: str = ""
    handshakes: list[dict[str, str]] = field(default_factory=list)
    subprotocols: list[list[str]] = field(default_factory=list)

    async def handler(self, connection: ServerConnection) -> None:
        self.handshakes.append({k.lower(): v for k, v in connection.request.headers.raw_items()})
        async for message in connection:
            if message == "silence":
                continue
            if isinstance(message, str) and message.startswith("close "):
                await connection.close(int(message.split()[1]), "asked")
                return
            await connection.send(message)


class Loop:
    """An event loop in a thread, for the servers under test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


@pytest.fixture
def upstream_ws(loop) -> Iterator[EchoUpstream]:
    echo = EchoUpstream()

    def choose(connection: ServerConnection, offered: list[str]) -> str | None:
        echo.subprotocols.append(list(offered))
        return "chat.v2" if "chat.v2" in offered else None

    def missing(connection: ServerConnection, request: Any) -> Any:
        return connection.respond(404, "No such socket.\n") if request.path == "/missing" else None

    async def start() -> Any:
        return await serve(
            echo.handler, "127.0.0.1", 0, select_subprotocol=choose, compression=None, process_request=missing
        )

    server = loop.run(start())
    echo.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield echo
    loop.run(_closed(server))


async def _closed(server: Any) -> None:
    server.close()
    await server.wait_closed()


@pytest.fixture
def relay(loop, tmp_path) -> Iterator[WebSocketRelay]:
    path = str(tmp_path / "wsrelay.sock")
    server = WebSocketRelay(path)
    started = asyncio.Event()
    future = asyncio.run_coroutine_threadsafe(server.serve(started), loop.loop)
    loop.run(asyncio.wait_for(started.wait(), 5))
    yield server
    loop.loop.call_soon_threadsafe(server.stop)
    future.result(20)


@pytest.fixture
def websocket_upstream(upstream_ws, alice):
    def make(**fields: Any) -> Upstream:
        upstream = Upstream.objects.create(name="ws", base_url=upstream_ws.url, internal=True, **fields)
        AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"], path_pattern="/chat")
        return upstream

    return make


def open_ws(relay: WebSocketRelay, token: str | None, path: str = "/gw/ws/chat", **options: Any) -> ClientConnection:
    """Connect as Apache would pass the handshake on (its trusted headers set)."""
    headers = {
        "X-Auditgate-Request-Line": f"GET {path} HTTP/1.1",
        "X-Auditgate-Peer": options.pop("peer", "127.0.0.1"),
        "X-Auditgate-Request-Id": options.pop("request_id", f"ws-test-{time.monotonic_ns()}"),
        "X-Auditgate-Scheme": "https",
        **options.pop("headers", {}),
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return unix_connect(relay.path, "ws://localhost" + path, additional_headers=headers, **options)


def event_of(request_id: str | None = None, *, wait: float = 5) -> AuditEvent:
    """The connection's event once it is complete (the relay writes it as the socket closes)."""
    deadline = time.monotonic() + wait
    while True:
        events = AuditEvent.objects.filter(event_type__startswith="gateway.")
        if request_id:
            events = events.filter(request_id=request_id)
        event = events.order_by("-id").first()
        if event is not None and event.completed_at is not None:
            return event
        if time.monotonic() > deadline:
            raise AssertionError(f"no complete event: {event and event.__dict__}")
        time.sleep(0.05)


def refusal_of(relay: WebSocketRelay, token: str | None, **options: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as refused:
        open_ws(relay, token, **options)
    response = refused.value.response
    return response.status_code, json.loads(response.body)


def test_messages_pass_both_ways_with_the_credential_and_the_identity(
    relay, websocket_upstream, upstream_ws, alice, token_for
):
    websocket_upstream(credential_header="X-Api-Key", credential_value="s3cret", identity_key="k" * 32)
    token = token_for(alice)
    with open_ws(relay, token, request_id="ws-echo-000000000001", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x00\x01\x02")
        assert ws.recv(timeout=5) == b"\x00\x01\x02"
    seen = upstream_ws.handshakes[0]
    assert seen["x-api-key"] == "s3cret"
    assert token not in json.dumps(seen)  # the caller's token never reaches the upstream
    assert identity.verify("k" * 32, seen["x-auditgate-identity"]).username == "alice"
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-request-id"] == "ws-echo-000000000001"
    assert upstream_ws.subprotocols == [["chat.v1", "chat.v2"]]
    event = event_of("ws-echo-000000000001")
    assert (event.event_type, event.status, event.decision, event.method) == ("gateway.websocket", 101, "allow", "GET")
    assert (event.request_bytes, event.response_bytes, event.close_code, event.error) == (8, 8, 1000, "")
    assert event.duration_ms > 0 and event.injected_credential == "X-Api-Key"


def test_a_handshake_the_policy_refuses_gets_its_status_and_code_and_is_audited(
    relay, websocket_upstream, upstream_ws, alice, token_for
):
    websocket_upstream()
    status, body = refusal_of(relay, token_for(alice), path="/gw/ws/admin", request_id="ws-deny-000000000001")
    assert (status, body["code"], body["request_id"]) == (403, "no_matching_rule", "ws-deny-000000000001")
    event = event_of("ws-deny-000000000001")
    assert (event.event_type, event.decision, event.reason, event.status) == (
        "gateway.denied", "deny", "no_matching_rule", 403,
    )  # fmt: skip
    assert upstream_ws.handshakes == []


def test_a_rule_outside_its_days_refuses_the_handshake(relay, upstream_ws, alice, token_for):
    from django.utils import timezone

    upstream = Upstream.objects.create(name="ws", base_url=upstream_ws.url, internal=True)
    not_today = [(timezone.now().weekday() + 3) % 7]
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"], days=not_today)
    status, body = refusal_of(relay, token_for(alice), request_id="ws-days-000000000001")
    assert (status, body["code"]) == (403, "outside_time_window")
    assert event_of("ws-days-000000000001").reason == "outside_time_window"
    assert upstream_ws.handshakes == []


def test_a_rule_that_allows_other_methods_only_refuses_the_handshake(relay, upstream_ws, alice, token_for):
    upstream = Upstream.objects.create(name="ws", base_url=upstream_ws.url, internal=True)
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["POST"])
    status, body = refusal_of(relay, token_for(alice))
    assert (status, body["code"]) == (403, "method_not_allowed")


def test_a_handshake_without_a_token_is_401(relay, websocket_upstream):
    websocket_upstream()
    status, body = refusal_of(relay, None)
    assert (status, body["code"]) == (401, "not_authenticated")


def test_a_token_limited_to_networks_is_refused_from_elsewhere(relay, websocket_upstream, alice, token_for):
    websocket_upstream()
    token = token_for(alice, allowed_cidrs=["10.0.0.0/8"])
    status, body = refusal_of(relay, token, peer="192.0.2.7", request_id="ws-net-000000000001")
    assert (status, body["code"]) == (403, "source_ip_not_allowed")
    assert event_of("ws-net-000000000001").source_ip == "192.0.2.7"


def test_the_relay_believes_only_apaches_headers(relay, websocket_upstream):
    websocket_upstream()
    with pytest.raises(InvalidStatus) as refused:
        unix_connect(relay.path, "ws://localhost/gw/ws/chat")
    assert refused.value.response.status_code == 400


def test_an_idle_websocket_is_closed_with_1001(relay, websocket_upstream, alice, token_for):
    websocket_upstream(websocket_idle_timeout=1)
    with open_ws(relay, token_for(alice), request_id="ws-idle-000000000001") as ws:
        ws.send("ping")
        ws.recv(timeout=5)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 1001 and 0.8 < time.monotonic() - started < 3
    event = event_of("ws-idle-000000000001")
    assert (event.close_code, event.error, event.status) == (1001, "websocket_idle_timeout", 101)


def test_a_websocket_is_closed_at_its_maximum_duration_however_busy(relay, websocket_upstream, alice, token_for):
    websocket_upstream(websocket_max_duration=2, websocket_idle_timeout=60)
    with (
        open_ws(relay, token_for(alice), request_id="ws-max-000000000001") as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        for _ in range(100):
            ws.send("busy")
            ws.recv(timeout=5)
            time.sleep(0.1)
    assert closed.value.rcvd.code == 1008
    event = event_of("ws-max-000000000001")
    assert (event.close_code, event.error) == (1008, "websocket_max_duration")
    assert 1900 < event.duration_ms < 4000 and event.request_bytes > 0


def test_the_upstreams_close_code_reaches_the_client_and_the_event(relay, websocket_upstream, alice, token_for):
    websocket_upstream()
    with open_ws(relay, token_for(alice), request_id="ws-close-000000000001") as ws:
        ws.send("close 4001")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 4001
    assert (event_of("ws-close-000000000001").close_code, event_of("ws-close-000000000001").error) == (4001, "")


def test_a_client_that_vanishes_is_recorded_as_aborted(relay, websocket_upstream, alice, token_for):
    websocket_upstream()
    with open_ws(relay, token_for(alice), request_id="ws-gone-000000000001") as ws:
        ws.send("x")
        ws.recv(timeout=5)
        ws.socket.close()  # no close frame
        event = event_of("ws-gone-000000000001")
        assert (event.close_code, event.error, event.client_aborted) == (1006, "client_aborted", True)


def test_an_upstream_that_is_down_is_a_502_and_recorded(relay, alice, token_for):
    upstream = Upstream.objects.create(name="ws", base_url="http://127.0.0.1:9", internal=True)
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"])
    status, body = refusal_of(relay, token_for(alice), request_id="ws-down-000000000001")
    assert (status, body["code"]) == (502, "upstream_refused")
    event = event_of("ws-down-000000000001")
    assert (event.event_type, event.status, event.error) == ("gateway.websocket", 502, "upstream_refused")


def test_an_upstream_that_never_answers_the_handshake_is_a_504(relay, alice, token_for):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        upstream = Upstream.objects.create(name="ws", base_url=url, internal=True, read_timeout=1)
        AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"])
        status, body = refusal_of(relay, token_for(alice), request_id="ws-slow-000000000001")
    assert (status, body["code"]) == (504, "upstream_read_timeout")
    assert event_of("ws-slow-000000000001").error == "upstream_read_timeout"


def test_an_upstream_that_refuses_the_upgrade_is_a_502_with_its_status_recorded(
    relay, websocket_upstream, alice, token_for
):
    upstream = websocket_upstream()
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"], path_pattern="/missing")
    status, body = refusal_of(relay, token_for(alice), path="/gw/ws/missing", request_id="ws-404-000000000001")
    assert (status, body["code"]) == (502, "upstream_invalid_response")
    event = event_of("ws-404-000000000001")
    assert (event.status, event.upstream_status, event.error) == (502, 404, "upstream_invalid_response")


def test_the_ssrf_guard_applies_at_connect_time(relay, upstream_ws, alice, token_for):
    # Registered as internal, then no longer: its loopback address is refused at connect.
    upstream = Upstream.objects.create(name="ws", base_url=upstream_ws.url, internal=True)
    Upstream.objects.filter(pk=upstream.pk).update(internal=False)
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"])
    status, body = refusal_of(relay, token_for(alice), request_id="ws-ssrf-000000000001")
    assert (status, body["code"]) == (502, "upstream_address_blocked")
    assert upstream_ws.handshakes == []


def test_nothing_reaches_the_upstream_when_the_attempt_cannot_be_recorded(
    relay, websocket_upstream, upstream_ws, alice, token_for, monkeypatch
):
    from django.db import DatabaseError

    from apps.audit.recording import GatewayAttempt

    websocket_upstream()

    def fail(self):
        raise DatabaseError("down")

    monkeypatch.setattr(GatewayAttempt, "begin", fail)
    status, body = refusal_of(relay, token_for(alice))
    assert (status, body["code"]) == (503, "audit_unavailable")
    assert upstream_ws.handshakes == []


def test_stopping_the_relay_closes_websockets_with_1001_and_records_them(
    loop, tmp_path, websocket_upstream, alice, token_for
):
    websocket_upstream()
    server = WebSocketRelay(str(tmp_path / "stop.sock"))
    started = asyncio.Event()
    serving = asyncio.run_coroutine_threadsafe(server.serve(started), loop.loop)
    loop.run(asyncio.wait_for(started.wait(), 5))
    with open_ws(server, token_for(alice), request_id="ws-stop-000000000001") as ws:
        ws.send("x")
        ws.recv(timeout=5)
        loop.loop.call_soon_threadsafe(server.stop)
        serving.result(20)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1001
        event = event_of("ws-stop-000000000001")
        assert (event.close_code, event.error) == (1001, "websocket_gateway_stopped")


def test_the_reconciler_leaves_a_live_websocket_open_past_the_http_bound(make_event, settings):
    from datetime import timedelta

    from django.utils import timezone

    from apps.audit.recording import WORKER

    old = timezone.now() - timedelta(seconds=settings.AUDIT_OPEN_ATTEMPT_BOUND_SECONDS + 60)
    websocket = make_event(event_type="gateway.websocket", occurred_at=old, completed_at=None, worker=WORKER)
    request = make_event(event_type="gateway.request", occurred_at=old, completed_at=None, worker=WORKER)
    assert reconcile() == [request.id]
    later = timezone.now() + timedelta(seconds=settings.AUDIT_OPEN_WEBSOCKET_BOUND_SECONDS)
    assert reconcile(now=later) == [websocket.id]


def test_the_websocket_bound_covers_the_longest_allowed_duration(settings):
    from apps.gateway.models.upstreams import MAX_WEBSOCKET_DURATION

    assert settings.AUDIT_OPEN_WEBSOCKET_BOUND_SECONDS >= MAX_WEBSOCKET_DURATION + 60
