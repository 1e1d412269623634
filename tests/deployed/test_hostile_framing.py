"""Requests that Apache, mod_wsgi or Django's host check refuse before the gateway's view runs.

Under ``/gw/`` and ``/api/`` every answer must be JSON with a ``code`` and a ``request_id``
(Apache's own refusals through its ErrorDocuments), nothing may reach an upstream, and each
request must be accounted for: an audit event when Django refused it, or, when Apache did,
its access-log line, which ``audit_access_log`` lists with the same request id.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.deployed.conftest import BASE_URL, CA_FILE, SITE_FILE, manage_ok
from tests.upstream import Upstream as EchoServer

pytestmark = pytest.mark.deployed

SERVER = urlsplit(BASE_URL)
HOST = SERVER.netloc
ERROR_BODIES = Path(__file__).resolve().parents[2] / "apache" / "errors"


def apache_answers() -> dict[int, str]:
    """The code of each status Apache answers itself: its ErrorDocument, apache/errors/<status>.json."""
    return {int(path.stem): error_body(path)["code"] for path in ERROR_BODIES.glob("*.json")}


def error_body(path: Path) -> dict:
    """An ErrorDocument as mod_include serves it (the request id echoed in)."""
    return json.loads(path.read_text().replace('<!--#echo var="UNIQUE_ID" -->', "axK0lti4P2dIKZvVscg4FQAAAEA"))


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict:
        assert self.headers.get("content-type", "").startswith("application/json"), (self.status, self.body[:300])
        return json.loads(self.body)


def exchange(raw: bytes, *, method: str = "GET", stall: bool = False) -> Answer:
    """Sends ``raw`` exactly as written on a new connection and reads the one answer.
    With ``stall`` the connection then stays silent until the server answers."""
    with socket.create_connection((SERVER.hostname, SERVER.port or 443), timeout=60) as plain:
        if SERVER.scheme == "https":
            conn = ssl.create_default_context(cafile=CA_FILE).wrap_socket(plain, server_hostname=SERVER.hostname)
        else:
            conn = plain
        with conn:
            conn.sendall(raw)
            response = http.client.HTTPResponse(conn, method=method)  # type: ignore[arg-type]
            response.begin()
            headers = {name.lower(): value for name, value in response.getheaders()}
            return Answer(response.status, headers, response.read())


def request(target: str, *headers: str, method: str = "GET", body: bytes = b"", eol: bytes = b"\r\n") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}", *headers, "Connection: close"]
    return eol.join(line.encode("latin-1") for line in lines) + eol + eol + body


@pytest.fixture(scope="module")
def upstream(admin, admin_token) -> Iterator[dict]:
    """A recording upstream the admin may GET and POST under /allowed: a refusal that leaked
    through to the gateway would reach it."""
    name = f"f-{secrets.token_hex(3)}"
    with EchoServer() as server:
        fields = {"name": name, "base_url": server.url, "internal": True}
        created = admin.post(f"{BASE_URL}/api/upstreams/", json=fields)
        assert created.status_code == 201, created.text
        rule = {"upstream": name, "user": "admin", "methods": ["GET", "POST"], "path_pattern": "/allowed"}
        assert admin.post(f"{BASE_URL}/api/rules/", json=rule).status_code == 201
        time.sleep(1.1)  # the gateway's upstream cache
        yield {"name": name, "seen": server.server.seen, "token": admin_token}
        admin.delete(created.json()["url"])


@pytest.fixture(scope="module")
def since() -> str:
    return (datetime.now(UTC) - timedelta(seconds=2)).replace(microsecond=0).isoformat()


def listed_by_audit_access_log(request_id: str, prefix: str, since: str) -> dict:
    """The request as ``audit_access_log`` lists it (Apache writes its line just after answering)."""
    deadline = time.monotonic() + 5
    while True:
        report = json.loads(manage_ok("audit_access_log", "--prefix", prefix, "--since", since, "--json"))
        listed = {r["request_id"]: r for r in report["requests"]}
        if request_id in listed or time.monotonic() > deadline:
            assert request_id in listed, f"{request_id} is not listed by audit_access_log --prefix {prefix}"
            return listed[request_id]
        time.sleep(0.2)


def assert_json_refusal(answer: Answer, status: int, code: str) -> str:
    assert answer.status == status, (answer.status, answer.body[:300])
    error = answer.error()
    assert error["code"] == code, error
    assert error["detail"]
    request_id = answer.headers.get("x-request-id")
    assert request_id and error["request_id"] == request_id, (answer.headers, error)
    return request_id


# Where each case is sent: the gateway (an allowed path of the recording upstream) and the API.
PLACES = {"gateway": ("/gw/", "/gw/{name}/allowed/x"), "api": ("/api/", "/api/upstreams/")}


@dataclass(frozen=True)
class Case:
    raw: Callable[[str, str], bytes]  # (target, token) -> the request as sent
    status: int
    code: str


def _auth(token: str) -> str:
    return f"Authorization: Token {token}"


CASES = {
    # mod_wsgi maps the request to "<script>/<path>", longer than PATH_MAX: an HTML 404 before.
    "path_over_4_kb": Case(lambda t, k: request(f"{t}/{'a' * 4100}", _auth(k)), 414, "uri_too_long"),
    # Apache refuses to decode %00 in a path: an HTML 404 before.
    "encoded_nul_in_the_path": Case(lambda t, k: request(f"{t}/a%00b", _auth(k)), 404, "not_found"),
    # mod_wsgi only knows plain "chunked": an HTML 501, the only 5xx outside the documented codes.
    "gzip_then_chunked_body": Case(
        lambda t, k: request(t, _auth(k), "Transfer-Encoding: gzip, chunked", method="POST", body=b"0\r\n\r\n"),
        411,
        "length_required",
    ),
    # The request line over LimitRequestLine: refused before it had a request id.
    "request_line_over_the_limit": Case(lambda t, k: request(f"{t}?q={'a' * 9000}", _auth(k)), 414, "uri_too_long"),
    "raw_fragment_in_the_target": Case(lambda t, k: request(f"{t}#fragment", _auth(k)), 400, "bad_request"),
    "absolute_form_with_a_fragment": Case(lambda t, k: request(f"https://{HOST}{t}#f", _auth(k)), 400, "bad_request"),
    "bare_lf_line_ends": Case(lambda t, k: request(t, _auth(k), eol=b"\n"), 400, "bad_request"),
    "control_character_in_the_target": Case(lambda t, k: request(f"{t}\x01", _auth(k)), 400, "bad_request"),
    "header_over_the_field_limit": Case(lambda t, k: request(t, _auth(k), f"X-Big: {'a' * 9000}"), 400, "bad_request"),
    "two_content_lengths": Case(
        lambda t, k: request(t, _auth(k), "Content-Length: 2", "Content-Length: 3", method="POST", body=b"{}"),
        400,
        "bad_request",
    ),
    # HTTP/0.9: an answer without a status line or headers, so without a code or request id.
    "http_0_9_request": Case(lambda t, k: f"GET {t}\r\n".encode(), 400, "bad_request"),
    "unknown_expectation": Case(
        lambda t, k: request(t, _auth(k), "Expect: teapot", "Content-Length: 0", method="POST"),
        417,
        "expectation_failed",
    ),
    # Routed to /gw/ or /api/ after Apache merges the slashes: the access log has the raw target.
    "double_slash_and_encoded_nul": Case(lambda t, k: request(f"/{t}%00", _auth(k)), 404, "not_found"),
}


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("case", CASES)
def test_refusals_apache_answers_itself_are_json_and_listed_by_audit_access_log(upstream, since, place, case):
    prefix, target = PLACES[place]
    target = target.format(name=upstream["name"])
    seen_before = len(upstream["seen"])
    answer = exchange(CASES[case].raw(target, upstream["token"]))
    request_id = assert_json_refusal(answer, CASES[case].status, CASES[case].code)
    assert upstream["token"].encode() not in answer.body
    assert upstream["seen"][seen_before:] == []
    assert listed_by_audit_access_log(request_id, prefix, since)["status"] == CASES[case].status


@pytest.mark.parametrize("place", PLACES)
def test_a_request_whose_headers_never_end_gets_a_json_408(upstream, since, place):
    """mod_reqtimeout gives up on the headers after 20 s (Debian's RequestReadTimeout)."""
    prefix, target = PLACES[place]
    started = time.monotonic()
    answer = exchange(request(target.format(name=upstream["name"]))[: -len(b"Connection: close\r\n\r\n")])
    assert time.monotonic() - started < 45
    request_id = assert_json_refusal(answer, 408, "request_timeout")
    assert listed_by_audit_access_log(request_id, prefix, since)["status"] == 408


def test_every_error_body_is_json_in_the_api_shape_and_an_errordocument_of_the_site():
    site = SITE_FILE.read_text()
    assert len(apache_answers()) >= 10
    for status, code in apache_answers().items():
        assert set(error_body(ERROR_BODIES / f"{status}.json")) == {"code", "detail", "request_id"}
        assert re.search(rf"^\s*ErrorDocument {status} /_errors/{status}\.json$", site, re.M), (status, code)
    for case in CASES.values():
        assert apache_answers()[case.status] == case.code


def test_the_error_bodies_are_not_served_on_their_own(since):
    answer = exchange(request("/_errors/404.json"))
    request_id = assert_json_refusal(answer, 403, "permission_denied")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert listed_by_audit_access_log(request_id, "/_errors/", since)["status"] == 403


def test_a_host_the_gateway_does_not_serve_is_refused_and_audited(admin, upstream, since):
    seen_before = len(upstream["seen"])
    raw = request(f"/gw/{upstream['name']}/allowed/x", _auth(upstream["token"])).replace(
        f"Host: {HOST}".encode(), b"Host: evil.example"
    )
    request_id = assert_json_refusal(exchange(raw), 400, "host_not_allowed")
    assert upstream["seen"][seen_before:] == []
    events = admin.get(f"{BASE_URL}/api/audit/events/", params={"request_id": request_id}).json()["results"]
    assert [(e["event_type"], e["decision"], e["reason"], e["status"]) for e in events] == [
        ("gateway.denied", "deny", "host_not_allowed", 400)
    ]
    assert events[0]["upstream_name"] == upstream["name"]
    assert upstream["token"] not in json.dumps(events[0])
    report = json.loads(manage_ok("audit_access_log", "--prefix", "/gw/", "--since", since, "--json"))
    assert request_id not in {r["request_id"] for r in report["requests"]}


def test_a_host_the_api_does_not_serve_is_refused_with_a_code_and_listed(upstream, since):
    raw = request("/api/me/", _auth(upstream["token"])).replace(f"Host: {HOST}".encode(), b"Host: evil.example")
    request_id = assert_json_refusal(exchange(raw), 400, "host_not_allowed")
    assert listed_by_audit_access_log(request_id, "/api/", since)["status"] == 400
