import pytest

from apps.gateway.models import AccessRule, Upstream

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client_for, admin_user):
    return client_for(admin_user)


def test_admins_create_read_update_and_delete_upstreams(api):
    created = api.post("/api/upstreams/", {"name": "crm", "base_url": "http://crm.internal:8080"}, format="json")
    assert created.status_code == 201, created.json()
    url = created.json()["url"]
    assert api.get(url).json()["base_url"] == "http://crm.internal:8080"
    assert api.patch(url, {"enabled": False}, format="json").json()["enabled"] is False
    assert api.delete(url).status_code == 204
    assert not Upstream.objects.exists()


def test_an_invalid_upstream_is_refused_with_field_errors(api):
    response = api.post("/api/upstreams/", {"name": "bad name", "base_url": "ftp://x"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert set(body["errors"]) == {"name", "base_url"}
    assert not Upstream.objects.exists()


def test_upstream_names_are_unique(api):
    Upstream.objects.create(name="crm", base_url="http://crm")
    response = api.post("/api/upstreams/", {"name": "crm", "base_url": "http://other"}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["errors"]


def test_timeouts_are_bounded_below_apaches_socket_timeout(api):
    response = api.post("/api/upstreams/", {"name": "x", "base_url": "http://x", "read_timeout": 600}, format="json")
    assert response.status_code == 400
    assert "read_timeout" in response.json()["errors"]


def test_admins_manage_rules_by_names(api, make_user):
    Upstream.objects.create(name="crm", base_url="http://crm")
    make_user("alice")
    payload = {"upstream": "crm", "user": "alice", "methods": ["POST", "GET", "GET"], "path_prefix": "/api"}
    response = api.post("/api/rules/", payload, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["methods"] == ["GET", "POST"]
    rule = AccessRule.objects.get()
    assert (rule.user.username, rule.upstream.name, rule.path_prefix) == ("alice", "crm", "/api")
    assert api.get("/api/rules/?user=alice").json()["results"][0]["id"] == rule.id


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"upstream": "crm", "methods": ["GET"]}, "non_field_errors"),
        ({"upstream": "crm", "user": "alice", "group": "ops", "methods": ["GET"]}, "non_field_errors"),
        ({"upstream": "crm", "user": "alice", "methods": ["CONNECT"]}, "methods"),
        ({"upstream": "crm", "user": "alice", "methods": []}, "methods"),
        ({"upstream": "crm", "user": "alice", "methods": ["GET"], "path_prefix": "/a/../b"}, "path_prefix"),
        ({"upstream": "nope", "user": "alice", "methods": ["GET"]}, "upstream"),
    ],
)
def test_invalid_rules_are_refused(api, make_user, payload, field):
    from django.contrib.auth.models import Group

    Upstream.objects.create(name="crm", base_url="http://crm")
    Group.objects.create(name="ops")
    make_user("alice")
    response = api.post("/api/rules/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not AccessRule.objects.exists()


def test_ordinary_users_cannot_create_upstreams(client_for, make_user):
    response = client_for(make_user()).post("/api/upstreams/", {"name": "x", "base_url": "http://x"}, format="json")
    assert response.status_code == 403
    assert not Upstream.objects.exists()
