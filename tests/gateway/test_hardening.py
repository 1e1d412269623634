"""The hardened proxy: headers, credentials, identity, limits, loops, SSRF at connect time,
and every class of upstream failure, against real servers on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.fernet import Fernet

from apps.audit.models import AuditEvent
from tests.gateway.test_proxy_view import body_of, only_event
from tests.upstream import GZIPPED, FullBacklogServer, ResettingServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def call(client_for, alice):
    def call(method: str, path: str, **extra):
        response = getattr(client_for(alice), method)(path, **extra)
        body = body_of(response)
        return response, body

    return call


def echoed(body: bytes) -> dict:
    return json.loads(body)


def test_the_upstream_credential_is_injected_and_never_recorded(call, make_upstream, upstream_server, client_for,
                                                                admin_user):  # fmt: skip
    make_upstream(upstream_server.url, credential_header="X-Api-Key", credential_value="upstream-s3cret-value")
    _, body = call("get", "/gw/up/x")
    assert echoed(body)["headers"]["x-api-key"] == "upstream-s3cret-value"
    event = only_event()
    assert event.injected_credential == "X-Api-Key"
    admin = client_for(admin_user)
    for url in ("/api/upstreams/", f"/api/audit/events/{event.id}/", "/api/audit/events/"):
        assert b"upstream-s3cret-value" not in admin.get(url).content, url


def test_a_credential_no_key_decrypts_is_refused_503_audited_and_nothing_forwarded(
    call, make_upstream, upstream_server, settings, caplog
):
    make_upstream(upstream_server.url, credential_header="X-Api-Key", credential_value="upstream-s3cret-value")
    settings.SECRETS_KEYS, settings.SECRETS_KEY_ID = {9: Fernet.generate_key()}, 9  # the key is gone
    seen_before = len(upstream_server.server.seen)
    response, body = call("get", "/gw/up/x")
    assert (response.status_code, json.loads(body)["code"]) == (503, "upstream_secret_unreadable")
    assert len(upstream_server.server.seen) == seen_before
    event = only_event()
    assert (event.decision, event.reason, event.status, event.injected_credential) == (
        "deny", "upstream_secret_unreadable", 503, ""
    )  # fmt: skip
    assert "no key of AUDITGATE_SECRETS_KEYS decrypts its ['credential_value']" in caplog.text


def test_the_identity_header_verifies_with_the_documented_recipe(call, make_upstream, upstream_server, alice):
    make_upstream(upstream_server.url, identity_key="shared-identity-key")
    response, body = call("get", "/gw/up/x")
    header = echoed(body)["headers"]["x-auditgate-identity"]
    fields = dict(part.split("=", 1) for part in header.split(";")[1:])
    assert header.startswith("v1;")
    assert (fields["user"], fields["rid"]) == ("alice", response["X-Request-ID"])
    assert fields["kid"] == only_event().token_key_id != ""
    message = "\n".join(("v1", fields["user"], fields["kid"], fields["rid"], fields["ts"])).encode()
    expected = hmac.new(b"shared-identity-key", message, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["sig"], expected)


def test_a_client_supplied_identity_header_is_not_forwarded(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url)
    _, body = call("get", "/gw/up/x", HTTP_X_AUDITGATE_IDENTITY="v1;user=root;sig=forged")
    assert "x-auditgate-identity" not in echoed(body)["headers"]


def test_forwarded_for_from_an_untrusted_peer_is_not_believed(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url)
    _, body = call("get", "/gw/up/x", HTTP_X_FORWARDED_FOR="1.2.3.4")
    headers = echoed(body)["headers"]
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert (headers["x-forwarded-proto"], headers["x-forwarded-host"]) == ("http", "testserver")
    assert only_event().source_ip == "127.0.0.1"


def test_forwarded_for_from_a_trusted_proxy_is_extended(call, make_upstream, upstream_server, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.0/8"]
    make_upstream(upstream_server.url)
    _, body = call("get", "/gw/up/x", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert echoed(body)["headers"]["x-forwarded-for"] == "198.51.100.7, 127.0.0.1"
    assert only_event().source_ip == "198.51.100.7"


def test_hop_by_hop_headers_are_dropped_in_both_directions(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url)
    _, body = call(
        "get", "/gw/up/x", HTTP_CONNECTION="X-Private-Hop", HTTP_X_PRIVATE_HOP="1", HTTP_KEEP_ALIVE="300",
        HTTP_TE="trailers", HTTP_PROXY_AUTHORIZATION="Basic eA==", HTTP_X_KEPT="yes",
    )  # fmt: skip
    headers = echoed(body)["headers"]
    for name in ("x-private-hop", "keep-alive", "te", "proxy-authorization"):
        assert name not in headers, name
    assert headers["x-kept"] == "yes"
    response, _ = call("get", "/gw/up/hop-headers")
    names = {name.lower() for name, _ in response.items()}
    assert not names & {"x-private-hop", "keep-alive", "proxy-authenticate", "trailer", "upgrade", "connection"}
    assert response["X-Kept"] == "yes"


def test_via_names_the_gateway_and_loops_get_508(call, make_upstream, upstream_server, settings):
    make_upstream(upstream_server.url)
    _, body = call("get", "/gw/up/x", HTTP_VIA="1.1 corp-proxy")
    assert echoed(body)["headers"]["via"] == "1.1 corp-proxy, 1.1 auditgate"
    twice = "1.1 auditgate, 1.1 auditgate"
    assert call("get", "/gw/up/x", HTTP_VIA=twice)[0].status_code == 200
    seen_before = len(upstream_server.server.seen)
    response, body = call("get", "/gw/up/x", HTTP_VIA=twice + ", 1.1 auditgate")
    assert (response.status_code, json.loads(body)["code"]) == (508, "loop_detected")
    assert len(upstream_server.server.seen) == seen_before
    assert AuditEvent.objects.filter(reason="loop_detected", status=508).count() == 1


def test_websocket_upgrades_get_a_clear_501(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url)
    response, body = call("get", "/gw/up/ws", HTTP_UPGRADE="websocket", HTTP_CONNECTION="Upgrade")
    assert (response.status_code, json.loads(body)["code"]) == (501, "upgrade_not_supported")


def test_an_oversized_body_gets_413_before_reaching_the_upstream(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url, max_request_bytes=100)
    seen_before = len(upstream_server.server.seen)
    response, body = call("post", "/gw/up/upload", data=b"x" * 101, content_type="application/octet-stream")
    assert (response.status_code, json.loads(body)["code"]) == (413, "request_too_large")
    assert len(upstream_server.server.seen) == seen_before
    assert call("post", "/gw/up/upload", data=b"x" * 100, content_type="text/plain")[0].status_code == 200


def test_an_answer_declared_too_large_gets_502(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url, max_response_bytes=1000)
    response, body = call("get", "/gw/up/bytes/1001")
    assert (response.status_code, json.loads(body)["code"]) == (502, "upstream_response_too_large")
    assert only_event().error == "upstream_response_too_large"


def test_an_undeclared_answer_is_cut_at_the_limit(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url, max_response_bytes=100_000)
    response, body = call("get", "/gw/up/chunked/1000000")
    assert response.status_code == 200
    assert len(body) <= 100_000
    assert only_event().error == "upstream_response_too_large"


def test_compressed_bodies_pass_through_untouched(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url)
    response, body = call("get", "/gw/up/gzip", HTTP_ACCEPT_ENCODING="gzip")
    assert (response["Content-Encoding"], body) == ("gzip", GZIPPED)


def test_absolute_redirects_into_the_upstream_are_rewritten(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url)
    response, _ = call("get", "/gw/up/redirect-absolute")
    assert response["Location"] == "http://testserver/gw/up/elsewhere?x=1"


def test_cookies_and_host_are_forwarded_only_when_the_upstream_says_so(call, make_upstream, upstream_server,
                                                                      client_for, alice):  # fmt: skip
    make_upstream(upstream_server.url, forward_cookies=True, preserve_host=True)
    client = client_for(alice)
    client.cookies["app"] = "upstream-cookie"
    headers = echoed(body_of(client.get("/gw/up/x")))["headers"]
    assert headers["cookie"] == "app=upstream-cookie"
    assert headers["host"] == "testserver"
    assert "authorization" not in headers


def test_the_upstreams_method_list_bounds_every_rule(call, make_upstream, upstream_server):
    make_upstream(upstream_server.url, allowed_methods=["GET"])
    response, body = call("delete", "/gw/up/x")
    assert (response.status_code, json.loads(body)["code"]) == (405, "method_not_allowed")


def test_a_token_scoped_to_other_upstreams_is_refused(client, make_upstream, upstream_server, alice, token_for):
    make_upstream(upstream_server.url)
    token = token_for(alice, all_upstreams=False)
    response = client.get("/gw/up/x", HTTP_AUTHORIZATION=f"Token {token}")
    assert (response.status_code, response.json()["code"]) == (403, "token_scope")
    assert only_event().reason == "token_scope"


def test_the_ssrf_guard_also_holds_at_connect_time(call, make_upstream, upstream_server):
    # Registered as external (the ORM skips registration checks); it resolves to loopback.
    make_upstream(upstream_server.url.replace("127.0.0.1", "localhost"), internal=False)
    seen_before = len(upstream_server.server.seen)
    response, body = call("get", "/gw/up/x")
    assert (response.status_code, json.loads(body)["code"]) == (502, "upstream_address_blocked")
    assert len(upstream_server.server.seen) == seen_before


@pytest.mark.parametrize(
    ("server", "url_of", "status", "code"),
    [
        (None, lambda s: "http://no-such-host.invalid", 502, "upstream_dns_failed"),
        ("echo", lambda s: s.url.replace("http://", "https://"), 502, "upstream_tls_failed"),
        ("reset", lambda s: s.url, 502, "upstream_reset"),
        ("backlog", lambda s: s.url, 504, "upstream_connect_timeout"),
    ],
)
def test_upstream_failures_are_classified(call, make_upstream, upstream_server, server, url_of, status, code):
    servers = {"echo": lambda: _Same(upstream_server), "reset": ResettingServer, "backlog": FullBacklogServer}
    with servers[server]() if server else _Same(None) as running:
        make_upstream(url_of(running), connect_timeout=0.5)
        response, body = call("get", "/gw/up/x")
    assert (response.status_code, json.loads(body)["code"]) == (status, code)
    assert (only_event().error, only_event().status) == (code, status)


class _Same:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return False
