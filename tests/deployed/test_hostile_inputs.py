"""Hostile input against the deployed gateway, with recording upstreams on loopback.

Every case asserts: no 5xx, nothing reached an out-of-scope upstream or path, the
caller's token appears nowhere (response, audit event, upstream's view), and the
attempt is accounted for: an audit event with the same reason when Django answered,
or the request id in Apache's access log when Apache refused it itself.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.deployed.conftest import BASE_URL, CA_FILE, logged_by_apache, settled_event, settled_events
from tests.deployed.test_hostile_framing import apache_answers
from tests.hostile_inputs import AMBIGUOUS_PATHS, MALFORMED_AUTHORIZATION, PATH_PAYLOADS, SSRF_TARGETS
from tests.upstream import ScriptedServer
from tests.upstream import Upstream as EchoServer

pytestmark = pytest.mark.deployed
OK_REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class Raw:
    """HTTPS requests sent exactly as written (requests would re-quote the path)."""

    def __init__(self) -> None:
        self.context = ssl.create_default_context(cafile=CA_FILE)
        self.host = urlsplit(BASE_URL).hostname
        self.port = urlsplit(BASE_URL).port or 443

    def send(self, method: str, target: str, headers: dict[str, str], body: bytes | None = None):
        status, header_list, body = self.send_lines(method, target, list(headers.items()), body)
        return status, dict(header_list), body

    def send_lines(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None = None):
        """As ``send``, with repeated or differently spelled header names; answers the header list."""
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            chunked = ("Transfer-Encoding", "chunked") in headers
            if chunked:
                body = b"2\r\n{}\r\n0\r\n\r\n"  # one chunk: an empty JSON object
            elif body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def raw() -> Raw:
    return Raw()


@pytest.fixture(scope="module")
def scene(admin, admin_token) -> Iterator[dict]:
    """An in-scope upstream (rule: admin, GET/POST under /allowed) and an out-of-scope one."""
    names = {"target": f"h-{secrets.token_hex(3)}", "other": f"o-{secrets.token_hex(3)}"}
    with EchoServer() as target, EchoServer() as other:
        created = []
        for key, server in (("target", target), ("other", other)):
            response = admin.post(
                f"{BASE_URL}/api/upstreams/", json={"name": names[key], "base_url": server.url, "internal": True}
            )
            assert response.status_code == 201, response.text
            created.append(response.json()["url"])
        rule = {"upstream": names["target"], "user": "admin", "methods": ["GET", "POST"], "path_pattern": "/allowed"}
        assert admin.post(f"{BASE_URL}/api/rules/", json=rule).status_code == 201
        yield {"names": names, "target": target.server, "other": other.server, "token": admin_token}
        for url in created:
            admin.delete(url)


def account_for(admin, status: int, headers: dict[str, str], body: bytes, token: str) -> None:
    """The checks every hostile case shares."""
    assert status < 500, (status, body[:300])
    assert token.encode() not in body
    request_id = headers.get("X-Request-ID")
    if request_id is None:
        # Apache refused a request line it could not parse, before assigning an id.
        assert status == 400, status
        return
    if headers.get("Content-Type", "").startswith("application/json") and b'"code"' in body:
        code = json.loads(body)["code"]
        events = admin.get(f"{BASE_URL}/api/audit/events/", params={"request_id": request_id}).json()["results"]
        if not events and apache_answers().get(status) == code:
            # Refused by Apache itself (README, "What Apache answers itself"): its log line is the record.
            assert logged_by_apache(request_id), request_id
            return
        assert len(events) == 1, (request_id, events)
        assert events[0]["reason"] == code
        assert token not in json.dumps(events[0])
    elif status != 200:
        assert logged_by_apache(request_id), request_id


def assert_in_scope(scene, seen_before: int, status: int, body: bytes) -> None:
    assert scene["other"].seen == []
    new = scene["target"].seen[seen_before:]
    if status == 200:
        view = json.loads(body)
        path = view["path"]
        assert path == "/allowed" or path.startswith("/allowed/"), path
        assert ".." not in path.split("/")
        assert "authorization" not in view["headers"]
        assert scene["token"] not in json.dumps(view)
    else:
        assert new == [], new


@pytest.mark.parametrize("payload", PATH_PAYLOADS)
def test_hostile_paths(raw, admin, scene, payload):
    seen_before = len(scene["target"].seen)
    status, headers, body = raw.send(
        "GET", f"/gw/{scene['names']['target']}{payload}", {"Authorization": f"Token {scene['token']}"}
    )
    assert status in (200, 400, 403, 404), (status, body[:300])
    account_for(admin, status, headers, body, scene["token"])
    assert_in_scope(scene, seen_before, status, body)


@pytest.mark.parametrize("value", MALFORMED_AUTHORIZATION)
def test_malformed_authorization_headers(raw, admin, scene, value):
    seen_before = len(scene["target"].seen)
    status, headers, body = raw.send("GET", f"/gw/{scene['names']['target']}/allowed/x", {"Authorization": value})
    assert status == 401, (status, body[:300])
    assert json.loads(body)["code"] in ("not_authenticated", "authentication_failed")
    account_for(admin, status, headers, body, scene["token"])
    assert scene["target"].seen[seen_before:] == []


@pytest.mark.parametrize("target", SSRF_TARGETS)
def test_ssrf_registration_targets_are_refused(admin, target):
    name = f"s-{secrets.token_hex(3)}"
    response = admin.post(f"{BASE_URL}/api/upstreams/", json={"name": name, "base_url": target})
    assert response.status_code == 400, (target, response.text)
    assert "base_url" in response.json()["errors"]
    assert admin.get(f"{BASE_URL}/api/upstreams/", params={"name": name}).json()["results"] == []


def test_hop_by_hop_headers_never_reach_the_upstream(raw, admin, scene):
    hop = {
        "Connection": "keep-alive, X-Private-Hop", "X-Private-Hop": "1", "Keep-Alive": "timeout=5", "TE": "trailers",
        "Trailer": "X-T", "Proxy-Authorization": "Basic eDp5", "Proxy-Connection": "keep-alive",
    }  # fmt: skip
    status, headers, body = raw.send(
        "GET", f"/gw/{scene['names']['target']}/allowed/hop", {"Authorization": f"Token {scene['token']}", **hop}
    )
    assert status == 200
    view = json.loads(body)["headers"]
    for name in hop:
        assert name.lower() not in view, name
    account_for(admin, status, headers, body, scene["token"])


def test_a_post_with_a_body_is_forwarded_whole(raw, scene):
    payload = secrets.token_bytes(50_000)
    status, _, body = raw.send(
        "POST", f"/gw/{scene['names']['target']}/allowed/upload",
        {"Authorization": f"Token {scene['token']}", "Content-Type": "application/octet-stream"}, payload,
    )  # fmt: skip
    assert status == 200
    assert json.loads(body)["body_length"] == len(payload)


def test_chunked_bodies_pass_the_gateway_whole_and_the_api_refuses_them_with_json(raw, admin, scene):
    """mod_wsgi lets chunked bodies through (WSGIChunkedRequest On): the gateway streams them to
    the upstream, chunked, and records them; the API, which reads bodies by their length,
    refuses them with a JSON 411."""
    chunked = {"Authorization": f"Token {scene['token']}", "Transfer-Encoding": "chunked",
               "Content-Type": "application/json"}  # fmt: skip
    status, headers, body = raw.send("POST", "/api/upstreams/", chunked)
    assert (status, json.loads(body)["code"]) == (411, "length_required")
    status, headers, body = raw.send("POST", f"/gw/{scene['names']['target']}/allowed/x", chunked)
    assert status == 200, body[:300]
    seen = json.loads(body)
    assert (seen["body_length"], seen["headers"]["transfer-encoding"]) == (2, "chunked")
    assert event_of(admin, headers["X-Request-ID"])["request_bytes"] == 2


# --- issue 12: hostile upstream replies, forged headers, ambiguous paths ------------------


@pytest.fixture
def serve(admin) -> Iterator:
    """Registers an upstream answering ``reply`` (tests.upstream.ScriptedServer), with a rule
    that lets the admin call it; returns (name, server).  Removed afterwards."""
    created: list[tuple[str, ScriptedServer]] = []

    def register(reply, **fields) -> tuple[str, ScriptedServer]:
        server = ScriptedServer(reply).__enter__()
        name = f"x-{secrets.token_hex(3)}"
        response = admin.post(
            f"{BASE_URL}/api/upstreams/", json={"name": name, "base_url": server.url, "internal": True, **fields}
        )
        assert response.status_code == 201, response.text
        created.append((response.json()["url"], server))
        assert admin.post(f"{BASE_URL}/api/rules/", json={"upstream": name, "user": "admin"}).status_code == 201
        return name, server

    yield register
    for url, server in created:
        admin.delete(url)
        server.__exit__(None, None, None)


def event_of(admin, request_id: str) -> dict:
    return settled_event(admin, request_id)


@pytest.mark.parametrize("raw_path", AMBIGUOUS_PATHS)
def test_paths_that_upstreams_read_as_another_path_are_refused(raw, admin, scene, raw_path):
    seen_before = len(scene["target"].seen)
    status, headers, body = raw.send(
        "GET", f"/gw/{scene['names']['target']}{raw_path}", {"Authorization": f"Token {scene['token']}"}
    )
    assert (status, json.loads(body)["code"]) == (400, "invalid_path"), body[:300]
    account_for(admin, status, headers, body, scene["token"])
    assert scene["target"].seen[seen_before:] == []


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 777 Odd\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: one\rSet-Cookie: sessionid=evil\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX-A: one\x00two\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["777", "101", "bare-cr", "nul"],
)
def test_an_upstream_answer_that_cannot_be_relayed_is_a_502_with_its_outcome_written(
    raw, admin, serve, reply, admin_token
):
    name, _ = serve(reply)
    status, headers, body = raw.send("GET", f"/gw/{name}/x", {"Authorization": f"Token {admin_token}"})
    assert (status, json.loads(body)["code"]) == (502, "upstream_invalid_response")
    assert "Set-Cookie" not in headers
    event = event_of(admin, headers["X-Request-ID"])
    assert (event["status"], event["error"]) == (502, "upstream_invalid_response")
    assert event["duration_ms"] is not None  # the outcome was written


def test_early_hints_are_skipped_and_the_final_answer_relayed(raw, admin, serve, admin_token):
    name, _ = serve(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK_REPLY)
    status, headers, body = raw.send("GET", f"/gw/{name}/x", {"Authorization": f"Token {admin_token}"})
    assert (status, body) == (200, b"ok")
    assert event_of(admin, headers["X-Request-ID"])["response_bytes"] == 2


def test_a_forged_credential_never_reaches_the_upstream_in_any_spelling(raw, admin, serve, admin_token):
    name, server = serve(OK_REPLY, credential_header="X-API-Key", credential_value="the-real-key")
    forged = [("X-Api-Key", "forged-1"), ("x-api-key", "forged-2"), ("X_Api_Key", "forged-3"),
              ("X-API-KEY", "forged-4"), ("X-Real-IP", "6.6.6.6"), ("Forwarded", "for=6.6.6.6"),
              ("X-Original-URL", "/admin"), ("X-HTTP-Method-Override", "DELETE")]  # fmt: skip
    status, _, _ = raw.send_lines("GET", f"/gw/{name}/x", [("Authorization", f"Token {admin_token}"), *forged])
    assert status == 200
    head = server.requests[-1].decode("latin-1").lower()
    assert head.count("x-api-key:") == 1
    assert "x-api-key: the-real-key" in head
    assert "forged" not in head and "6.6.6.6" not in head
    assert "x-original-url" not in head and "x-http-method-override" not in head
    assert "x-real-ip: 127.0.0.1" in head


def test_an_upstream_that_trickles_is_cut_at_its_total_timeout(raw, admin, serve, admin_token):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"
    name, _ = serve([(head, 0.0)] + [(b"x", 0.25)] * 1000, total_timeout=2, read_timeout=5)
    with pytest.raises(http.client.IncompleteRead):
        raw.send("GET", f"/gw/{name}/x", {"Authorization": f"Token {admin_token}"})
    events = settled_events(admin, {"upstream": name})
    assert [(e["status"], e["error"]) for e in events] == [(200, "upstream_total_timeout")]
    assert 0 < events[0]["response_bytes"] < 1000
    assert events[0]["duration_ms"] < 5000


def test_response_headers_are_what_the_gateway_allows(raw, admin, serve, admin_token):
    reply = (
        b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=0\r\n"
        b"Set-Cookie: sessionid=evil; Domain=localhost; Path=/\r\nSet-Cookie: csrftoken=evil; Path=/\r\n"
        b"Set-Cookie: theirs=1; Path=/app; Domain=localhost\r\n"
        b"Content-Length: 1000\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    name, _ = serve(reply)
    status, headers, body = raw.send_lines("GET", f"/gw/{name}/x", [("Authorization", f"Token {admin_token}")])
    assert (status, body) == (200, b"hello")
    names = [n.lower() for n, _ in headers]
    assert names.count("strict-transport-security") == 1
    assert ("Strict-Transport-Security", "max-age=0") not in headers
    assert [v for n, v in headers if n.lower() == "set-cookie"] == [f"theirs=1; Path=/gw/{name}/app"]
    assert "content-length" not in names or dict(headers).get("Content-Length") == "5"
    event = event_of(admin, dict(headers)["X-Request-ID"])
    assert (event["response_bytes"], event["error"]) == (5, "")


def test_an_answer_without_content_type_is_relayed_without_one(raw, admin, serve, admin_token):
    name, _ = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    status, headers, body = raw.send("GET", f"/gw/{name}/x", {"Authorization": f"Token {admin_token}"})
    assert (status, body) == (200, b"ok")
    assert "Content-Type" not in headers, headers


def test_a_location_that_climbs_out_of_the_upstream_is_not_rewritten_into_the_gateway(raw, admin, serve, admin_token):
    name, server = serve(b"")
    server.parts = [(f"HTTP/1.1 302 Found\r\nLocation: {server.url}/app/../../api/tokens/\r\n"
                     "Content-Length: 0\r\n\r\n".encode(), 0.0)]  # fmt: skip
    admin.patch(admin.get(f"{BASE_URL}/api/upstreams/", params={"name": name}).json()["results"][0]["url"],
                json={"base_url": f"{server.url}/app"})  # fmt: skip
    status, headers, _ = raw.send("GET", f"/gw/{name}/x", {"Authorization": f"Token {admin_token}"})
    assert status == 302
    assert headers["Location"] == f"{server.url}/api/tokens/"


def test_a_client_whose_body_stalls_gets_408_and_the_event_says_408(admin, registered_upstream, admin_token):
    host, port = urlsplit(BASE_URL).hostname, urlsplit(BASE_URL).port or 443
    context = ssl.create_default_context(cafile=CA_FILE)
    with context.wrap_socket(socket.create_connection((host, port)), server_hostname=host) as conn:
        conn.settimeout(30)
        conn.sendall(f"POST /gw/{registered_upstream}/allowed/x HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: Token {admin_token}\r\nContent-Length: 50\r\n\r\nabc".encode())  # fmt: skip
        answer = conn.recv(65536)
    status = int(answer.split(b" ", 2)[1])
    request_id = re.search(rb"X-Request-ID: (\S+)", answer).group(1).decode()
    assert status == 408
    event = event_of(admin, request_id)
    assert (event["status"], event["error"]) == (408, "client_body_timeout")


def test_a_chunked_body_over_the_upstreams_limit_gets_413_and_the_event_says_so(admin, register_upstream, admin_token):
    name = register_upstream(max_request_bytes=1000)
    host, port = urlsplit(BASE_URL).hostname, urlsplit(BASE_URL).port or 443
    context = ssl.create_default_context(cafile=CA_FILE)
    chunk = b"x" * 4000
    with context.wrap_socket(socket.create_connection((host, port)), server_hostname=host) as conn:
        conn.settimeout(30)
        conn.sendall(
            f"POST /gw/{name}/allowed/x HTTP/1.1\r\nHost: {host}\r\nAuthorization: Token {admin_token}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
            + b"%x\r\n" % len(chunk)
            + chunk
            + b"\r\n0\r\n\r\n"
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head = answer.partition(b"\r\n\r\n")[0]
    assert head.split(b" ", 2)[1] == b"413", head
    request_id = re.search(rb"X-Request-ID: (\S+)", head).group(1).decode()
    event = event_of(admin, request_id)
    assert (event["status"], event["error"]) == (413, "request_too_large")
