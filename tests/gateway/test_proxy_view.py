"""The gateway view end to end inside Django, against a real upstream on loopback."""

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory

from apps.audit.models import AuditEvent
from apps.gateway.models import AccessRule, Upstream
from tests.upstream import closed_port_url

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def echo(upstream_server, alice):
    upstream = Upstream.objects.create(name="echo", base_url=upstream_server.url + "/base", internal=True)
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET", "HEAD", "POST"])
    return upstream


@pytest.fixture
def direct(upstream_server, alice):
    """The echo server without a base path, for its special paths."""
    upstream = Upstream.objects.create(name="direct", base_url=upstream_server.url, internal=True)
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET", "HEAD"])
    return upstream


def body_of(response) -> bytes:
    """Consume a streamed response the way a WSGI server does (which closes it)."""
    return b"".join(response.streaming_content) if response.streaming else response.content


@contextmanager
def keeping_the_test_connection() -> Iterator[None]:
    """Django's handler closes old connections around each request; the test's transaction
    lives on its connection, so keep it (as Django's test client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def serve_and_disconnect(environ) -> None:
    """Serve through Django's WSGI handler and, like mod_wsgi when the client goes
    away, ``close()`` the response after its first chunk."""
    with keeping_the_test_connection():
        result = WSGIHandler()(environ, lambda status, headers: None)
        next(iter(result))
        result.close()


def only_event() -> AuditEvent:
    """The one gateway event the test caused (token creation by the fixtures is an event too)."""
    events = list(AuditEvent.objects.filter(event_type__startswith="gateway."))
    assert len(events) == 1, events
    return events[0]


def test_an_allowed_request_is_forwarded_streamed_back_and_audited(client_for, alice, echo):
    response = client_for(alice).get("/gw/echo/reports/q1?year=2024&api_key=hunter2", HTTP_USER_AGENT="curl/8")
    echoed = json.loads(body_of(response))
    assert response.status_code == 200
    assert response["X-Upstream"] == "echo"
    assert (echoed["method"], echoed["path"], echoed["query"]) == (
        "GET",
        "/base/reports/q1",
        "year=2024&api_key=hunter2",
    )
    event = only_event()
    assert event.request_id == response["X-Request-ID"]
    assert (event.decision, event.reason, event.status, event.upstream_status) == ("allow", "allowed", 200, 200)
    assert (event.actor_id, event.actor_username, event.upstream_name) == (alice.id, "alice", "echo")
    assert (event.method, event.path, event.user_agent) == ("GET", "/reports/q1", "curl/8")
    assert event.rule_id == AccessRule.objects.get(upstream=echo).id
    assert event.response_bytes == len(json.dumps(echoed).encode())
    assert "hunter2" not in event.query and "year=2024" in event.query
    assert event.error == ""


def test_the_callers_token_and_cookies_never_reach_the_upstream(client_for, alice, echo):
    client = client_for(alice)
    client.cookies["sessionid"] = "gateway-session"
    echoed = json.loads(body_of(client.get("/gw/echo/x", HTTP_X_CUSTOM="kept")))
    headers = echoed["headers"]
    assert "authorization" not in headers and "cookie" not in headers
    assert headers["x-custom"] == "kept"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-request-id"] == only_event().request_id


def test_request_bodies_are_forwarded_and_counted(client_for, alice, echo):
    payload = b"x" * 100_000
    response = client_for(alice).post("/gw/echo/upload", data=payload, content_type="application/octet-stream")
    echoed = json.loads(body_of(response))
    assert echoed["body_length"] == len(payload)
    assert echoed["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert only_event().request_bytes == len(payload)


def test_large_responses_arrive_whole(client_for, alice, direct):
    response = client_for(alice).get("/gw/direct/bytes/1000000")
    body = body_of(response)
    assert body == bytes(i % 251 for i in range(1_000_000))
    assert only_event().response_bytes == 1_000_000


def test_redirects_are_relayed_not_followed_and_point_back_at_the_gateway(client_for, alice, direct):
    response = client_for(alice).get("/gw/direct/redirect")
    body_of(response)
    assert (response.status_code, response["Location"]) == (302, "http://testserver/gw/direct/elsewhere")


def test_repeated_upstream_headers_are_all_relayed(client_for, alice, direct):
    response = client_for(alice).get("/gw/direct/cookies")
    body_of(response)
    # Both cookies, each confined to the upstream's part of the gateway (apps.gateway.cookies).
    cookies = [value for name, value in response.items() if name == "Set-Cookie"]
    assert cookies == ["a=1; Path=/gw/direct/", "b=2; Path=/gw/direct/"]


def test_head_requests_are_audited_without_a_body(client_for, alice, direct):
    response = client_for(alice).head("/gw/direct/bytes/10")
    assert body_of(response) == b""
    event = only_event()
    assert (event.method, event.status, event.error) == ("HEAD", 200, "")


def test_upstream_errors_are_relayed_as_they_are(client_for, alice, direct):
    response = client_for(alice).get("/gw/direct/status/503")
    body_of(response)
    assert response.status_code == 503
    assert (only_event().decision, only_event().upstream_status) == ("allow", 503)


def test_a_client_that_goes_away_mid_stream_is_recorded(token_for, alice, direct):
    request = RequestFactory().get("/gw/direct/bytes/1000000", HTTP_AUTHORIZATION=f"Token {token_for(alice)}")
    serve_and_disconnect(request.environ)
    event = only_event()
    assert event.error == "client_aborted"
    assert 0 < event.response_bytes < 1_000_000


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "not_authenticated"), ({"HTTP_AUTHORIZATION": "Token wrong"}, "authentication_failed")],
)
def test_unauthenticated_attempts_get_401_and_are_audited(client, echo, headers, code):
    response = client.get("/gw/echo/x", **headers)
    assert response.status_code == 401
    assert response.json() == {
        "code": code,
        "detail": response.json()["detail"],
        "request_id": response["X-Request-ID"],
    }
    assert response["WWW-Authenticate"].startswith("Token")
    event = only_event()
    assert (event.decision, event.reason, event.status, event.actor_id) == ("deny", code, 401, None)


def test_tokens_in_the_query_string_are_not_accepted(client, echo, alice, token_for):
    response = client.get(f"/gw/echo/x?token={token_for(alice)}")
    assert response.status_code == 401
    assert token_for(alice) not in only_event().query


def test_a_request_no_rule_allows_is_denied_and_audited(client_for, make_user, echo):
    bob = make_user("bob")
    response = client_for(bob).get("/gw/echo/x")
    assert response.status_code == 403
    assert response.json()["code"] == "no_matching_rule"
    event = only_event()
    assert (event.decision, event.reason, event.actor_username, event.rule_id) == (
        "deny",
        "no_matching_rule",
        "bob",
        None,
    )


def test_a_method_outside_the_rule_is_denied(client_for, alice, direct):
    response = client_for(alice).post("/gw/direct/x", data=b"{}", content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (403, "method_not_allowed")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/gw/nope/x", 404, "upstream_not_found"),
        ("/gw/echo/a/%2E%2E/b", 400, "invalid_path"),
    ],
)
def test_bad_requests_get_clear_errors_and_are_audited(client_for, alice, echo, path, status, code):
    response = client_for(alice).get(path)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert (only_event().reason, only_event().status) == (code, status)


def test_methods_that_are_never_proxied_are_refused(client_for, alice, echo):
    response = client_for(alice).generic("TRACE", "/gw/echo/x")
    assert (response.status_code, response.json()["code"]) == (405, "method_not_allowed")
    assert only_event().reason == "method_not_allowed"


def test_a_disabled_upstream_is_denied(client_for, alice, echo):
    Upstream.objects.filter(pk=echo.pk).update(enabled=False)
    response = client_for(alice).get("/gw/echo/x")
    assert (response.status_code, response.json()["code"]) == (403, "upstream_disabled")


def test_an_unreachable_upstream_gives_502_and_is_audited(client_for, alice):
    upstream = Upstream.objects.create(name="down", base_url=closed_port_url(), internal=True)
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"])
    response = client_for(alice).get("/gw/down/x")
    assert (response.status_code, response.json()["code"]) == (502, "upstream_refused")
    event = only_event()
    assert (event.decision, event.error, event.status) == ("allow", "upstream_refused", 502)
    assert event.upstream_status is None


def test_a_slow_upstream_gives_504_after_its_read_timeout(client_for, alice, upstream_server):
    upstream = Upstream.objects.create(name="slow", base_url=upstream_server.url, read_timeout=0.2, internal=True)
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"])
    response = client_for(alice).get("/gw/slow/slow?seconds=2")
    assert (response.status_code, response.json()["code"]) == (504, "upstream_read_timeout")
    assert only_event().error == "upstream_read_timeout"


def test_bearer_tokens_are_accepted_too(client_for, alice, echo):
    response = client_for(alice, scheme="Bearer").get("/gw/echo/x")
    body_of(response)
    assert response.status_code == 200


class _BodyCutOff:
    """A request body whose client leaves after ``sent`` bytes, as mod_wsgi reports it."""

    def __init__(self, sent: bytes):
        self._sent = sent

    def read(self, size: int = -1) -> bytes:
        if self._sent:
            data, self._sent = self._sent[:size], self._sent[size:]
            return data
        raise OSError("Apache/mod_wsgi request data read error: Partial results are valid but processing is incomplete")

    readline = read  # Django's LimitedStream wants it; the gateway never reads lines


def test_a_client_that_goes_away_mid_upload_is_recorded(token_for, alice, echo):
    request = RequestFactory().post("/gw/echo/upload", data=b"x" * 1000, content_type="application/octet-stream",
                                    HTTP_AUTHORIZATION=f"Token {token_for(alice)}")  # fmt: skip
    request.environ["wsgi.input"] = _BodyCutOff(b"x" * 100)
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        WSGIHandler()(request.environ, lambda status, headers: None).close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    event = only_event()
    assert (event.client_aborted, event.error, event.status) == (True, "client_aborted", 499)
    assert event.request_bytes == 100
    assert event.completed_at is not None
