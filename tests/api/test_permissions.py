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
