"""The deployed WSGI callable (apps.core.handlers): the gateway's short middleware chain,
and the number of queries a gateway request costs."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEvent
from apps.core.handlers import is_gateway_path
from apps.gateway.models import AccessRule, Upstream
from tests.gateway.test_proxy_view import keeping_the_test_connection

pytestmark = pytest.mark.django_db


@pytest.fixture
def echo(upstream_server, alice):
    upstream = Upstream.objects.create(name="echo", base_url=upstream_server.url, internal=True)
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"])
    return upstream


def serve(application, path: str, method: str = "GET", **headers: str) -> tuple[str, dict[str, str], bytes]:
    """One request through the WSGI callable, consumed and closed the way mod_wsgi does."""
    environ = RequestFactory().generic(method, path, **headers).environ
    answer: dict[str, object] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: object = None) -> None:
        answer["status"], answer["headers"] = status, dict(response_headers)

    with keeping_the_test_connection():
        result = application(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            result.close()
    return answer["status"], answer["headers"], body  # type: ignore[return-value]


def test_the_gateway_path_takes_the_short_chain_and_everything_else_the_full_one():
    assert is_gateway_path("/gw/echo/x")
    assert is_gateway_path("/gw")  # refused and audited by the gateway view itself
    assert not is_gateway_path("/gwx/echo")
    assert not is_gateway_path("/api/gw/")


def test_a_forwarded_request_through_the_short_chain_keeps_the_hosts_headers(application, token_for, alice, echo):
    status, headers, body = serve(application, "/gw/echo/item", HTTP_AUTHORIZATION=f"Token {token_for(alice)}")
    assert status.startswith("200")
    assert json.loads(body)["path"] == "/item"
    # The same headers as every other answer of this host: request id, nosniff, no framing.
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    event = AuditEvent.objects.get(event_type="gateway.request")
    assert (event.request_id, event.status, event.completed_at is not None) == (headers["X-Request-ID"], 200, True)
    # Sessions and CSRF are not in the gateway's chain: nothing sets a cookie.
    assert "Set-Cookie" not in headers


@pytest.mark.parametrize("path", ["/gw/echo/item", "/gw/echo/denied", "/gw/nosuch/x", "/gw"])
def test_the_gateways_own_handler_answers_as_the_short_chain_did(application, token_for, alice, echo, path):
    from django.conf import settings

    from apps.core.handlers import ShortChainHandler

    short_chain = ShortChainHandler(settings.GATEWAY_MIDDLEWARE)
    token = f"Token {token_for(alice)}"
    ours = serve(application, path, HTTP_AUTHORIZATION=token)
    theirs = serve(short_chain, path, HTTP_AUTHORIZATION=token)
    assert ours[0] == theirs[0]
    assert sorted(ours[1]) == sorted(theirs[1])  # the same headers: request id, nosniff, frames, referrer...
    hosts_own = ("X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy")
    assert [ours[1].get(name) for name in hosts_own] == [theirs[1].get(name) for name in hosts_own]
    assert ours[1]["X-Frame-Options"] == "DENY"
    if not ours[0].startswith("200"):  # a refusal: the same body, but for its request id
        assert ours[2].replace(ours[1]["X-Request-ID"].encode(), b"") == theirs[2].replace(
            theirs[1]["X-Request-ID"].encode(), b""
        )


def test_the_api_keeps_the_full_chain(application):
    status, headers, _ = serve(application, "/api/auth/login/")
    assert status.startswith("200")
    assert "csrftoken=" in headers.get("Set-Cookie", "")  # CsrfViewMiddleware ran


def test_a_forwarded_request_costs_two_queries_once_the_caches_are_warm(application, token_for, alice, echo):
    token = f"Token {token_for(alice)}"
    serve(application, "/gw/echo/warm", HTTP_AUTHORIZATION=token)  # loads token, upstream, rules, groups
    with CaptureQueriesContext(connection) as queries:
        status, _, _ = serve(application, "/gw/echo/item", HTTP_AUTHORIZATION=token)
    assert status.startswith("200")
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    # The attempt, then its outcome (drained from the spool: in the request's thread here, in
    # the process's drainer thread when deployed).
    assert statements == ["INSERT", "UPDATE"], queries.captured_queries


def test_a_refusal_costs_one_query_once_the_caches_are_warm(application, token_for, alice, echo):
    token = f"Token {token_for(alice)}"
    serve(application, "/gw/echo/warm", HTTP_AUTHORIZATION=token)
    with CaptureQueriesContext(connection) as queries:
        status, _, _ = serve(application, "/gw/echo/item", "DELETE", HTTP_AUTHORIZATION=token)
    assert status.startswith("403"), status  # the rule allows GET only
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"], queries.captured_queries
