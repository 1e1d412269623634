"""Health and the caller's identity (``apps.core.api.views``)."""

import pytest

pytestmark = pytest.mark.django_db


def test_health_needs_no_token_and_checks_the_database(client):
    response = client.get("/api/health/")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_me_says_who_and_how(client_for, make_user):
    response = client_for(make_user("carol", groups=("auditor",)), scheme="Bearer").get("/api/me/")
    assert response.json() == {
        "username": "carol",
        "is_staff": False,
        "groups": ["auditor"],
        "authentication": "ManagementAPITokenAuthentication",
        "scopes": ["audit:read", "policy:read", "policy:write", "tokens:read", "tokens:write"],
    }
