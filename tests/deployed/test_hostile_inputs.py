"""Hostile input against the deployed gateway, with recording upstreams on loopback.

Every case asserts: no 5xx, nothing reached an out-of-scope upstream or path, the
caller's token appears nowhere (response, audit event, upstream's view), and the
attempt is accounted for: an audit event with the same reason when Django answered,
or the request id in Apache's access log when Apache refused it itself.
"""

from __future__ import annotations

import http.client
import json
import secrets
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.deployed.conftest import BASE_URL, CA_FILE, logged_by_apache
from tests.hostile_inputs import MALFORMED_AUTHORIZATION, PATH_PAYLOADS, SSRF_TARGETS
from tests.upstream import Upstream as EchoServer

pytestmark = pytest.mark.deployed


class Raw:
    """HTTPS requests sent exactly as written (requests would re-quote the path)."""

    def __init__(self) -> None:
        self.context = ssl.create_default_context(cafile=CA_FILE)
        self.host = urlsplit(BASE_URL).hostname
        self.port = urlsplit(BASE_URL).port or 443

    def send(self, method: str, target: str, headers: dict[str, str], body: bytes | None = None):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            chunked = headers.get("Transfer-Encoding") == "chunked"
            if chunked:
                body = b"2\r\n{}\r\n0\r\n\r\n"  # one chunk: an empty JSON object
            elif body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
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


def test_chunked_bodies_are_refused_with_json_and_the_gateways_refusal_is_audited(raw, admin, scene):
    """mod_wsgi lets chunked bodies through (WSGIChunkedRequest On) so that Django, not an
    HTML page of Apache's, refuses them: audited on the gateway, JSON on the API."""
    seen_before = len(scene["target"].seen)
    chunked = {"Authorization": f"Token {scene['token']}", "Transfer-Encoding": "chunked",
               "Content-Type": "application/json"}  # fmt: skip
    for target in (f"/gw/{scene['names']['target']}/allowed/x", "/api/upstreams/"):
        status, headers, body = raw.send("POST", target, chunked)
        assert status == 411, (target, status, body[:300])
        assert json.loads(body)["code"] == "length_required"
    gateway_status, headers, body = raw.send("POST", f"/gw/{scene['names']['target']}/allowed/x", chunked)
    account_for(admin, gateway_status, headers, body, scene["token"])
    assert scene["target"].seen[seen_before:] == []
