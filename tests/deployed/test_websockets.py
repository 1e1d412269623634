"""WebSockets through the deployed gateway: a real ``websockets`` client over TLS to Apache,
mod_proxy_http's tunnel to the relay (the ``auditgate-ws`` daemon), and a real WebSocket
upstream on loopback; the events read back through the audit API."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from apps.gateway import identity
from tests.deployed.conftest import BASE_URL, CA_FILE, daemons, fresh_token, manage_ok

pytestmark = pytest.mark.deployed
WSS_URL = BASE_URL.replace("https://", "wss://").replace("http://", "ws://")
IDENTITY_KEY = "deployed-websocket-identity-key-0123"


class EchoUpstream:
    """A WebSocket server on loopback in its own thread: echoes, keeps each handshake's
    headers, and closes with the code it is sent as ``close <code>``."""

    def __init__(self) -> None:
        self.handshakes: list[dict[str, str]] = []
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = self._run(self._start())
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)

    async def _start(self) -> Any:
        return await serve(self._handler, "127.0.0.1", 0, compression=None, select_subprotocol=self._choose)

    @staticmethod
    def _choose(connection: ServerConnection, offered: list[str]) -> str | None:
        return "chat.v2" if "chat.v2" in offered else None

    async def _handler(self, connection: ServerConnection) -> None:
        self.handshakes.append({k.lower(): v for k, v in connection.request.headers.raw_items()})
        async for message in connection:
            if isinstance(message, str) and message.startswith("close "):
                await connection.close(int(message.split()[1]), "asked")
                return
            await connection.send(message)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        self._run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoUpstream]:
    upstream = EchoUpstream()
    yield upstream
    upstream.close()


@pytest.fixture
def register_ws(admin, echo) -> Iterator:
    """An upstream for the echo server (or ``base_url``) with a rule letting the admin GET /chat."""
    created = []

    def register(**fields: Any) -> str:
        name = f"ws-{secrets.token_hex(4)}"
        payload = {"name": name, "base_url": echo.url, "internal": True, **fields}
        response = admin.post(f"{BASE_URL}/api/upstreams/", json=payload)
        assert response.status_code == 201, response.text
        created.append(response.json()["url"])
        rule = {"upstream": name, "user": "admin", "methods": ["GET"], "path_pattern": "/chat"}
        assert admin.post(f"{BASE_URL}/api/rules/", json=rule).status_code == 201
        return name

    yield register
    for url in created:
        assert admin.delete(url).status_code == 204


def open_ws(token: str, upstream: str, path: str = "/chat", **options: Any) -> ClientConnection:
    context = ssl.create_default_context(cafile=CA_FILE)
    headers = {"Authorization": f"Bearer {token}", **options.pop("headers", {})}
    return connect(f"{WSS_URL}/gw/{upstream}{path}", ssl=context, additional_headers=headers, **options)


def refusal(token: str, upstream: str, path: str = "/chat") -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as refused:
        open_ws(token, upstream, path)
    return refused.value.response.status_code, json.loads(refused.value.response.body)


def event(admin, request_id: str, *, wait: float = 10) -> dict[str, Any]:
    """The connection's audit event once its outcome is written (the export has every field)."""
    deadline = time.monotonic() + wait
    while True:
        response = admin.get(f"{BASE_URL}/api/audit/events/export/", params={"format": "ndjson",
                                                                             "request_id": request_id})  # fmt: skip
        assert response.status_code == 200, response.text
        events = [json.loads(line) for line in response.text.splitlines() if line]
        if len(events) == 1 and events[0]["completed_at"]:
            return events[0]
        assert len(events) <= 1, events
        assert time.monotonic() < deadline, f"no complete event for {request_id}: {events}"
        time.sleep(0.2)


def test_messages_pass_both_ways_with_the_credential_and_the_signed_identity(admin, admin_token, register_ws, echo):
    name = register_ws(credential_header="X-Api-Key", credential_value="ws-secret", identity_key=IDENTITY_KEY)
    with open_ws(admin_token, name, subprotocols=["chat.v1", "chat.v2"]) as ws:
        request_id = ws.response.headers["X-Request-ID"]
        assert ws.subprotocol == "chat.v2"
        ws.send("hello, upstream")
        assert ws.recv(timeout=5) == "hello, upstream"
        ws.send(b"\xff" * 1000)
        assert ws.recv(timeout=5) == b"\xff" * 1000
    seen = echo.handshakes[-1]
    assert seen["x-api-key"] == "ws-secret"
    assert admin_token not in str(seen)
    assert identity.verify(IDENTITY_KEY, seen["x-auditgate-identity"]).username == "admin"
    assert (seen["x-request-id"], seen["x-forwarded-proto"]) == (request_id, "https")
    recorded = event(admin, request_id)
    assert (recorded["event_type"], recorded["status"], recorded["decision"]) == ("gateway.websocket", 101, "allow")
    assert (recorded["request_bytes"], recorded["response_bytes"]) == (1015, 1015)
    assert (recorded["close_code"], recorded["error"], recorded["upstream_name"]) == (1000, "", name)
    assert recorded["duration_ms"] > 0 and recorded["completed_at"] >= recorded["occurred_at"]


def test_a_path_no_rule_allows_is_refused_at_the_handshake_and_audited(admin, admin_token, register_ws, echo):
    name = register_ws()
    before = len(echo.handshakes)
    status, body = refusal(admin_token, name, "/admin")
    assert (status, body["code"]) == (403, "no_matching_rule")
    recorded = event(admin, body["request_id"])
    assert (recorded["event_type"], recorded["reason"], recorded["status"]) == (
        "gateway.denied",
        "no_matching_rule",
        403,
    )
    assert len(echo.handshakes) == before


def test_a_token_for_another_upstream_is_refused_by_scope(admin, register_ws):
    name, other = register_ws(), register_ws()
    status, body = refusal(fresh_token("admin", "--upstream", other), name)
    assert (status, body["code"]) == (403, "token_scope")
    assert event(admin, body["request_id"])["reason"] == "token_scope"


def test_a_token_from_outside_its_networks_is_refused(admin, register_ws):
    name = register_ws()
    status, body = refusal(fresh_token("admin", "--cidr", "10.0.0.0/8"), name)
    assert (status, body["code"]) == (403, "source_ip_not_allowed")
    assert event(admin, body["request_id"])["source_ip"] == "127.0.0.1"


def test_an_idle_websocket_is_closed_and_recorded(admin, admin_token, register_ws):
    name = register_ws(websocket_idle_timeout=1)
    with open_ws(admin_token, name) as ws:
        request_id = ws.response.headers["X-Request-ID"]
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1001 and time.monotonic() - started < 5
    recorded = event(admin, request_id)
    assert (recorded["close_code"], recorded["error"]) == (1001, "websocket_idle_timeout")


def test_a_websocket_is_closed_at_its_maximum_duration(admin, admin_token, register_ws):
    name = register_ws(websocket_max_duration=2)
    with open_ws(admin_token, name) as ws:
        request_id = ws.response.headers["X-Request-ID"]
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(60):
                ws.send("tick")
                ws.recv(timeout=5)
                time.sleep(0.2)
    assert closed.value.rcvd.code == 1008
    recorded = event(admin, request_id)
    assert (recorded["close_code"], recorded["error"]) == (1008, "websocket_max_duration")
    assert 1900 < recorded["duration_ms"] < 5000


def test_an_upstream_that_is_down_is_a_502_and_recorded(admin, admin_token, register_ws):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    name = register_ws(base_url=f"http://127.0.0.1:{port}")
    status, body = refusal(admin_token, name)
    assert (status, body["code"]) == (502, "upstream_refused")
    recorded = event(admin, body["request_id"])
    assert (recorded["event_type"], recorded["status"], recorded["error"]) == (
        "gateway.websocket",
        502,
        "upstream_refused",
    )


def test_the_upstreams_close_code_reaches_the_client(admin, admin_token, register_ws):
    name = register_ws()
    with open_ws(admin_token, name) as ws:
        request_id = ws.response.headers["X-Request-ID"]
        ws.send("close 4002")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 4002
    assert event(admin, request_id)["close_code"] == 4002


def test_a_client_that_disconnects_is_recorded(admin, admin_token, register_ws):
    name = register_ws()
    with open_ws(admin_token, name) as ws:
        request_id = ws.response.headers["X-Request-ID"]
        ws.send("bye")
        ws.recv(timeout=5)
        ws.socket.close()  # gone without a close frame
        recorded = event(admin, request_id)
        assert (recorded["close_code"], recorded["error"]) == (1006, "client_aborted")
        assert (recorded["request_bytes"], recorded["response_bytes"]) == (3, 3)


def test_the_relay_runs_in_its_own_daemon_as_the_apps_account_and_only_apache_may_connect():
    assert [user for _, user in daemons("auditgate-ws")] == ["auditgate"]
    sock = Path("/srv/auditgate/run/wsrelay.sock")
    stat = sock.stat()
    assert (oct(stat.st_mode & 0o777), sock.group(), sock.owner()) == ("0o660", "www-data", "auditgate")


def relay_pids() -> list[int]:
    return [pid for pid, _ in daemons("auditgate-ws")]


def relay_serving_again(old_pids: list[int], timeout: float = 30) -> None:
    """A new relay process listens (Apache restarted it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = relay_pids()
        if pids and not set(pids) & set(old_pids) and "listening" in _relay_log_tail(pids[0]):
            return
        time.sleep(0.2)
    raise AssertionError("the relay did not come back")


def _relay_log_tail(pid: int) -> str:
    lines = Path("/var/log/apache2/auditgate_error.log").read_text(errors="replace").splitlines()[-200:]
    return "\n".join(line for line in lines if f"[pid {pid}:" in line)


def test_restarting_the_relay_closes_websockets_with_1001_and_records_them(admin, admin_token, register_ws):
    name = register_ws()
    with open_ws(admin_token, name) as ws:
        request_id = ws.response.headers["X-Request-ID"]
        ws.send("x")
        ws.recv(timeout=5)
        old = relay_pids()
        subprocess.run(["/usr/local/sbin/auditgate-restart-daemons", "auditgate-ws"], check=True, timeout=60)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1001
        recorded = event(admin, request_id)
        assert (recorded["close_code"], recorded["error"]) == (1001, "websocket_gateway_stopped")
        relay_serving_again(old)
        with open_ws(admin_token, name) as again:
            again.send("back")
            assert again.recv(timeout=5) == "back"


def test_a_killed_relay_is_restarted_and_its_websockets_are_closed_by_the_reconciler(admin, admin_token, register_ws):
    name = register_ws()
    with open_ws(admin_token, name) as ws:
        request_id = ws.response.headers["X-Request-ID"]
        old = relay_pids()
        os.kill(old[0], signal.SIGKILL)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        relay_serving_again(old)
        manage_ok("audit_reconcile")
        recorded = event(admin, request_id)
        assert (recorded["status"], recorded["error"]) == (None, "interrupted")
        with open_ws(admin_token, name) as again:
            again.send("back")
            assert again.recv(timeout=5) == "back"


def test_other_protocol_upgrades_are_still_refused_with_501(admin, register_ws):
    name = register_ws()
    response = admin.get(f"{BASE_URL}/gw/{name}/chat", headers={"Upgrade": "h2c", "Connection": "Upgrade"})
    assert (response.status_code, response.json()["code"]) == (501, "upgrade_not_supported")
