"""Every endpoint, with an allowed and a permission-denied case (NetBox style)."""

import pytest

pytestmark = pytest.mark.django_db

ADMIN_ONLY = ["/api/upstreams/", "/api/rules/"]
AUDITORS = ["/api/audit/verify"]
ANY_USER = ["/api/me/", "/api/", "/api/audit/events/", "/api/tokens/"]


@pytest.mark.parametrize("url", ADMIN_ONLY + AUDITORS + ANY_USER)
def test_anonymous_callers_get_401_with_a_code(client, url):
    response = client.get(url, HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.json()["request_id"] == response["X-Request-ID"]


@pytest.mark.parametrize("url", ADMIN_ONLY + AUDITORS)
def test_ordinary_users_are_refused_with_403(client_for, make_user, url):
    response = client_for(make_user()).get(url)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize("url", ADMIN_ONLY + AUDITORS + ANY_USER)
def test_admins_may_read_every_endpoint(client_for, admin_user, url):
    assert client_for(admin_user).get(url).status_code == 200


@pytest.mark.parametrize("url", AUDITORS + ANY_USER)
def test_auditors_may_read_the_audit_trail(client_for, make_user, url):
    assert client_for(make_user(groups=("auditor",))).get(url).status_code == 200


@pytest.mark.parametrize("url", ADMIN_ONLY)
def test_auditors_may_not_manage_upstreams_or_rules(client_for, make_user, url):
    assert client_for(make_user(groups=("auditor",))).get(url).status_code == 403


@pytest.mark.parametrize("url", ANY_USER)
def test_any_authenticated_user_may_read_its_own_identity(client_for, make_user, url):
    assert client_for(make_user()).get(url).status_code == 200


def test_a_malformed_authorization_header_is_a_401(client):
    response = client.get("/api/me/", HTTP_AUTHORIZATION="Token a b")
    assert (response.status_code, response.json()["code"]) == (401, "authentication_failed")


# --- Token scopes: each endpoint needs its own (issue 12, item 13) --------------------------

# (method, url, the scope it needs); a write scope includes its read scope.
SCOPED = [
    ("get", "/api/audit/events/", "audit:read"),
    ("get", "/api/audit/events/export/", "audit:read"),
    ("get", "/api/audit/stats", "audit:read"),
    ("get", "/api/audit/verify", "audit:read"),
    ("get", "/api/upstreams/", "policy:read"),
    ("get", "/api/rules/", "policy:read"),
    ("post", "/api/policy/check", "policy:read"),
    ("post", "/api/upstreams/", "policy:write"),
    ("post", "/api/rules/", "policy:write"),
    ("get", "/api/tokens/", "tokens:read"),
    ("post", "/api/tokens/", "tokens:write"),
]
INCLUDED_BY = {"policy:read": "policy:write", "tokens:read": "tokens:write"}


def scoped_client(token_for, user, scopes):
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user, scopes=list(scopes))}")
    return api


@pytest.mark.parametrize(("method", "url", "scope"), SCOPED)
def test_a_token_without_the_endpoints_scope_gets_403_token_scope_and_an_audit_event(
    token_for, admin_user, method, url, scope
):
    from apps.audit.models import AuditEvent
    from apps.gateway.scopes import SCOPES

    others = [other for other in SCOPES if other not in (scope, INCLUDED_BY.get(scope))]
    response = getattr(scoped_client(token_for, admin_user, others), method)(url, {}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "token_scope")
    event = AuditEvent.objects.get(event_type="auth.failed", request_id=response["X-Request-ID"])
    assert (event.reason, event.status, event.actor_username) == ("token_scope", 403, "root-admin")


@pytest.mark.parametrize(("method", "url", "scope"), SCOPED)
def test_the_endpoints_scope_alone_is_enough(token_for, admin_user, method, url, scope):
    for scopes in ([scope], [INCLUDED_BY.get(scope, scope)]):
        response = getattr(scoped_client(token_for, admin_user, scopes), method)(url, {}, format="json")
        assert response.status_code in (200, 400), (scopes, response.content)  # 400: the empty body, once allowed


@pytest.mark.parametrize("scope", ["audit:read", "policy:read", "tokens:read"])
def test_any_scope_may_ask_who_it_is_and_sees_its_scopes(token_for, make_user, scope):
    response = scoped_client(token_for, make_user(), [scope]).get("/api/me/")
    assert (response.status_code, response.json()["scopes"]) == (200, [scope])


def test_a_token_without_any_scope_is_refused_by_the_whole_management_api(token_for, admin_user):
    response = scoped_client(token_for, admin_user, []).get("/api/me/")
    assert (response.status_code, response.json()["code"]) == (403, "token_scope")
