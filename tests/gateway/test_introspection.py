"""POST /api/introspect: upstreams ask whether the identity assertion they received is active."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.gateway import identity
from apps.gateway.authentication import token_cache
from apps.gateway.models import AccessRule, APIToken, Upstream
from tests.gateway.test_proxy_view import body_of

pytestmark = pytest.mark.django_db

KEY = "crm-identity-key-0123456789"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def alice(make_user):
    return make_user("alice", groups=("sales",))


@pytest.fixture
def crm(upstream_server, alice):
    upstream = Upstream.objects.create(name="crm", base_url=upstream_server.url, internal=True, identity_key=KEY)
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"])
    return upstream


@pytest.fixture
def assertion(client_for, alice, crm) -> tuple[str, str]:
    """(the X-Auditgate-Identity that reached the upstream, the gateway request id)."""
    response = client_for(alice).get("/gw/crm/report")
    echoed = json.loads(body_of(response))
    return echoed["headers"]["x-auditgate-identity"], response["X-Request-ID"]


def basic(name: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{key}".encode()).decode()


def introspect(client, token, auth: str | None = None):
    """As RFC 7662 says: form-encoded."""
    return client.post("/api/introspect", urlencode({"token": token}), content_type=FORM,
                       HTTP_AUTHORIZATION=auth or basic("crm", KEY))  # fmt: skip


def last_introspection() -> AuditEvent:
    return AuditEvent.objects.filter(event_type="identity.introspected").latest("id")


def test_an_assertion_the_gateway_just_sent_is_active_with_its_claims(client, assertion, alice):
    value, request_id = assertion
    response = introspect(client, value)
    assert response.status_code == 200
    claims = response.json()
    assert claims["active"] is True, last_introspection().reason
    assert (claims["sub"], claims["username"], claims["aud"]) == ("alice", "alice", "crm")
    assert claims["request_id"] == request_id
    assert claims["exp"] - claims["iat"] == 60
    assert abs(claims["iat"] - time.time()) < 10
    assert claims["groups"] == ["sales"]
    assert response["Cache-Control"] == "no-store"


def test_every_introspection_is_audited_without_the_key_or_the_assertion(client, assertion):
    value, request_id = assertion
    introspect(client, value)
    event = last_introspection()
    assert (event.decision, event.reason, event.status) == ("allow", "active", 200)
    assert (event.upstream_name, event.object_id, event.object_repr) == ("crm", request_id, "alice")
    assert event.auth_method == "upstream_basic"
    stored = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert KEY not in stored
    assert value.rsplit("sig=", 1)[1] not in stored


@pytest.mark.parametrize(
    "auth",
    [None, basic("crm", "wrong-key"), basic("nobody", KEY), "Basic !!!", "Token abc", basic("crm", "")],
)
def test_a_caller_that_is_not_the_upstream_gets_401(client, assertion, auth):
    extra = {"HTTP_AUTHORIZATION": auth} if auth else {}
    response = client.post("/api/introspect", urlencode({"token": assertion[0]}), content_type=FORM, **extra)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response["WWW-Authenticate"].startswith("Basic ")
    assert (last_introspection().reason, last_introspection().status) == ("invalid_client", 401)


def test_an_upstream_without_an_identity_key_cannot_introspect(client, upstream_server, assertion):
    Upstream.objects.create(name="plain", base_url=upstream_server.url, internal=True)
    assert introspect(client, assertion[0], auth=basic("plain", "")).status_code == 401


def test_an_assertion_signed_for_another_upstream_is_inactive(client, assertion, upstream_server):
    Upstream.objects.create(name="other", base_url=upstream_server.url, internal=True, identity_key="other-key-123")
    response = introspect(client, assertion[0], auth=basic("other", "other-key-123"))
    assert response.json() == {"active": False}
    assert last_introspection().reason == "bad_signature"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda v: v.replace("user=alice", "user=admin"), "bad_signature"),
        (lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"), "bad_signature"),
        (lambda v: "v2" + v[2:], "malformed"),
        (lambda v: v.replace(";ts=", ";x=1;ts="), "malformed"),
        (lambda v: "", "malformed"),
        (lambda v: "garbage", "malformed"),
    ],
)
def test_a_tampered_or_malformed_assertion_is_inactive(client, assertion, change, reason):
    response = introspect(client, change(assertion[0]))
    assert (response.status_code, response.json()) == (200, {"active": False})
    assert last_introspection().reason == reason


def test_an_old_assertion_is_inactive(client, assertion, alice):
    fields = dict(pair.split("=", 1) for pair in assertion[0].split(";")[1:])
    old = identity.assertion(KEY, "alice", fields["kid"], fields["rid"], now=int(time.time()) - 61)
    assert introspect(client, old).json() == {"active": False}
    assert last_introspection().reason == "expired"


def test_a_well_signed_assertion_for_a_request_the_gateway_never_forwarded_is_inactive(client, assertion):
    fields = dict(pair.split("=", 1) for pair in assertion[0].split(";")[1:])
    forged = identity.assertion(KEY, "alice", fields["kid"], "not-a-request-id")
    assert introspect(client, forged).json() == {"active": False}
    assert last_introspection().reason == "unknown_request"


def test_revoking_the_callers_token_makes_its_assertions_inactive(client, assertion):
    APIToken.objects.filter(user__username="alice").update(revoked_at=timezone.now())
    token_cache.clear()  # what the 1 s cache bound does in production
    assert introspect(client, assertion[0]).json() == {"active": False}
    assert last_introspection().reason == "token_inactive"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ('{"token": ["a", "b"]}', "application/json"),
        ("", "text/plain"),
        ("token=a", "multipart/form-data"),
    ],
)
def test_unreadable_requests_get_active_false_never_an_error(client, crm, body, content_type):
    response = client.post("/api/introspect", body, content_type=content_type,
                           HTTP_AUTHORIZATION=basic("crm", KEY))  # fmt: skip
    assert (response.status_code, response.json()) == (200, {"active": False})


def test_the_assertion_may_also_be_sent_as_json(client, assertion):
    response = client.post("/api/introspect", {"token": assertion[0]}, content_type="application/json",
                           HTTP_AUTHORIZATION=basic("crm", KEY))  # fmt: skip
    assert response.json()["active"] is True


@pytest.mark.parametrize("error", ["OperationalError", "IntegrityError"])
def test_a_database_outage_is_a_503_and_a_database_bug_a_500(client, assertion, monkeypatch, error):
    """The same rule as every other view (apps.core.middleware): only an unreachable database
    is the client's to retry."""
    from django import db

    from apps.gateway.api import views as introspection

    def failing(name, key):
        raise getattr(db, error)(2013, "Lost connection to server during query")

    monkeypatch.setattr(introspection, "authenticate_caller", failing)
    client.raise_request_exception = False
    response = introspect(client, assertion[0])
    if error == "OperationalError":
        assert (response.status_code, response.json()["code"], response["Retry-After"]) == (
            503, "database_unavailable", "5",
        )  # fmt: skip
    else:
        assert response.status_code == 500
