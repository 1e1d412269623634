"""What a hostile caller or a hostile upstream tries on the relay (issue 12), in-process
against real sockets on loopback: each class of attack, and that the trail records what
the client got."""

from __future__ import annotations

import json
import time

import pytest

from apps.audit.models import AuditEvent
from apps.gateway import headers
from apps.gateway.models import AccessRule
from tests.gateway.test_proxy_view import body_of, only_event
from tests.upstream import ScriptedServer

pytestmark = pytest.mark.django_db

OK_BODY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def call(client_for, alice):
    def call(path: str, method: str = "get", **extra):
        response = getattr(client_for(alice), method)(path, **extra)
        return response, body_of(response)

    return call


@pytest.fixture
def scripted(make_upstream):
    """An upstream ``up`` that answers ``reply`` (tests.upstream.ScriptedServer)."""
    servers: list[ScriptedServer] = []

    def serve(reply, **fields) -> ScriptedServer:
        servers.append(ScriptedServer(reply).__enter__())
        make_upstream(servers[-1].url, **fields)
        return servers[-1]

    yield serve
    for server in servers:
        server.__exit__(None, None, None)


# --- 1, 6, 9: answers that cannot be relayed faithfully --------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 777 Odd\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 600 Beyond\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: one\rSet-Cookie: sessionid=evil\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX-A: one\x00two\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX A: one\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX-A: \x1b[31m\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["777", "600", "101-unasked", "bare-cr", "nul", "obs-fold", "space-in-name", "escape"],
)
def test_an_answer_that_cannot_be_relayed_faithfully_is_a_502_and_recorded(call, scripted, reply):
    scripted(reply)
    response, body = call("/gw/up/x")
    assert response.status_code == 502
    assert json.loads(body)["code"] == "upstream_invalid_response"
    assert "Set-Cookie" not in response
    event = only_event()
    assert (event.status, event.error) == (502, "upstream_invalid_response")
    assert event.completed_at is not None


@pytest.mark.parametrize("interim", [b"100 Continue", b"103 Early Hints\r\nLink: </a.css>; rel=preload", b"102 X"])
def test_interim_answers_are_skipped_and_the_final_one_relayed(call, scripted, interim):
    scripted(b"HTTP/1.1 " + interim + b"\r\n\r\n" + OK_BODY)
    response, body = call("/gw/up/x")
    assert (response.status_code, body) == (200, b"ok")
    assert "Link" not in response
    event = only_event()
    assert (event.status, event.upstream_status, event.response_bytes, event.error) == (200, 200, 2, "")


def test_an_unexpected_error_on_the_relay_path_still_records_the_outcome(call, make_upstream, upstream_server,
                                                                       monkeypatch):  # fmt: skip
    make_upstream(upstream_server.url)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(headers, "client_facing", broken)
    with pytest.raises(RuntimeError):
        call("/gw/up/x")
    event = only_event()
    assert event.completed_at is not None
    assert (event.status, event.error) == (500, "gateway_error")


# --- 2, 11: request headers the caller must not control ---------------------------------


def test_every_header_the_gateway_sets_replaces_the_callers_whatever_its_case(call, make_upstream, upstream_server):
    make_upstream(
        upstream_server.url, credential_header="X-API-Key", credential_value="real-key", identity_key="k" * 32
    )
    forged = {
        "HTTP_X_API_KEY": "forged", "HTTP_X_AUDITGATE_IDENTITY": "forged", "HTTP_X_REQUEST_ID": "forged",
        "HTTP_X_FORWARDED_HOST": "forged", "HTTP_X_FORWARDED_PROTO": "forged", "HTTP_X_REAL_IP": "6.6.6.6",
        "HTTP_FORWARDED": "for=6.6.6.6", "HTTP_X_FORWARDED_FOR": "6.6.6.6",
    }  # fmt: skip
    response, body = call("/gw/up/x", **forged)
    assert response.status_code == 200
    lines = json.loads(body)["header_lines"]
    values = {}
    for name, value in lines:
        values.setdefault(name.lower(), []).append(value)
    assert values["x-api-key"] == ["real-key"]
    for name in ("x-auditgate-identity", "x-request-id", "x-forwarded-host", "x-forwarded-proto", "x-real-ip",
                 "forwarded", "x-forwarded-for"):  # fmt: skip
        assert len(values[name]) == 1, name
        assert "forged" not in values[name][0] and "6.6.6.6" not in values[name][0], (name, values[name])
    assert values["x-real-ip"] == ["127.0.0.1"]
    assert values["forwarded"] == ['for="127.0.0.1";proto=http;host="testserver"']


REWRITING = {
    "HTTP_X_ORIGINAL_URL": "/admin", "HTTP_X_REWRITE_URL": "/admin", "HTTP_X_HTTP_METHOD_OVERRIDE": "DELETE",
    "HTTP_X_HTTP_METHOD": "DELETE", "HTTP_X_METHOD_OVERRIDE": "DELETE", "HTTP_X_FORWARDED_PREFIX": "/admin",
    "HTTP_X_FORWARDED_PORT": "1", "HTTP_X_ORIGINAL_HOST": "evil",
}  # fmt: skip


def test_headers_that_rewrite_the_request_upstream_are_dropped_by_default(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url)
    _, body = call("/gw/up/x", **REWRITING)
    seen = json.loads(body)["headers"]
    for key in REWRITING:
        assert key[5:].replace("_", "-").lower() not in seen, key


def test_an_upstream_may_let_the_rewriting_headers_through(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url, forward_rewrite_headers=True)
    _, body = call("/gw/up/x", **REWRITING)
    seen = json.loads(body)["headers"]
    assert seen["x-original-url"] == "/admin"
    assert seen["x-http-method-override"] == "DELETE"


# --- 4: the deadline on a whole exchange --------------------------------------------------


def test_an_upstream_that_trickles_its_answer_is_cut_at_its_total_timeout(call, scripted):
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    scripted([(head, 0.0)] + [(b"x", 0.3)] * 100, total_timeout=1.5, read_timeout=5)
    started = time.monotonic()
    response, body = call("/gw/up/x")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert 1.3 < elapsed < 3.0, elapsed
    assert len(body) < 100
    event = only_event()
    assert (event.error, event.response_bytes) == ("upstream_total_timeout", len(body))


def test_an_upstream_slower_than_its_total_timeout_to_answer_gets_504(call, scripted):
    scripted([(OK_BODY, 3.0)], total_timeout=1.0, read_timeout=30)
    started = time.monotonic()
    response, body = call("/gw/up/x")
    assert time.monotonic() - started < 2.5
    assert (response.status_code, json.loads(body)["code"]) == (504, "upstream_total_timeout")
    assert only_event().error == "upstream_total_timeout"


# --- 5, 8, 12: response headers ------------------------------------------------------------


def test_cookies_from_an_upstream_are_confined_and_never_the_gateways_own(call, scripted):
    cookies = [
        "sessionid=evil; Domain=testserver; Path=/",
        "csrftoken=evil; Path=/",
        "__Host-x=evil; Path=/; Secure",
        "theirs=1; Domain=.testserver; Path=/app; HttpOnly; SameSite=Lax",
        "plain=2",
        "climb=3; Path=/../../api",
    ]
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"Set-Cookie: {c}\r\n" for c in cookies) + "Content-Length: 0\r\n\r\n"
    scripted(head.encode())
    response, _ = call("/gw/up/x")
    relayed = [value for name, value in response.items() if name == "Set-Cookie"]
    assert relayed == [
        "theirs=1; Path=/gw/up/app; HttpOnly; SameSite=Lax",
        "plain=2; Path=/gw/up/",
        "climb=3; Path=/gw/up/",
    ]


def test_content_length_beside_chunked_framing_is_not_relayed(call, scripted):
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    scripted(reply)
    response, body = call("/gw/up/x")
    assert body == b"hello world"
    assert "Content-Length" not in response
    event = only_event()
    assert (event.response_bytes, event.error) == (11, "")


def test_the_upstreams_hsts_never_replaces_the_gateways(call, scripted):
    scripted(b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=0\r\nContent-Length: 0\r\n\r\n")
    response, _ = call("/gw/up/x")
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/app/next", "http://testserver/gw/up/next"),
        ("{base}/app/../app/next", "http://testserver/gw/up/next"),
        ("{base}/app/../../api/tokens/", "{base}/api/tokens/"),
        ("/app/%2e%2e/api/", "{base}/api/"),
        ("/app\\..\\api/", "{base}/api/"),
        ("../../../api/", "{base}/api/"),
        ("sibling", "http://testserver/gw/up/dir/sibling"),
        ("https://elsewhere.example/x", "https://elsewhere.example/x"),
    ],
)
def test_a_location_is_resolved_before_it_is_rewritten_into_the_gateway(call, make_upstream, location, expected):
    with ScriptedServer(b"") as server:
        base = server.url
        location = location.format(base=base)
        server.parts = [(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode(), 0)]
        make_upstream(f"{base}/app")
        response, _ = call("/gw/up/dir/page")
    assert response.status_code == 302
    assert response["Location"] == expected.format(base=base)


# --- 10: paths a deny rule cannot judge ----------------------------------------------------


def test_a_case_insensitive_rule_denies_every_letter_case(call, make_upstream, upstream_server, alice):
    upstream = make_upstream(upstream_server.url)
    AccessRule.objects.create(upstream=upstream, user=alice, effect="deny", priority=1, path_pattern="/admin",
                              case_insensitive=True)  # fmt: skip
    for path in ("/gw/up/admin", "/gw/up/ADMIN/x", "/gw/up/Admin"):
        response, body = call(path)
        assert (response.status_code, json.loads(body)["code"]) == (403, "denied_by_rule"), path
    assert call("/gw/up/other")[0].status_code == 200
    assert AuditEvent.objects.filter(reason="denied_by_rule").count() == 3
