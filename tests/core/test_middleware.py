"""Request ids, an unreachable database and chunked bodies (``apps.core.middleware``)."""

import pytest

pytestmark = pytest.mark.django_db


def test_every_response_carries_a_request_id(client):
    first, second = client.get("/api/health/"), client.get("/api/health/")
    assert len(first["X-Request-ID"]) == 32
    assert first["X-Request-ID"] != second["X-Request-ID"]


def test_apaches_unique_id_becomes_the_request_id(client):
    response = client.get("/api/health/", UNIQUE_ID="ZKx3aH8AAQEAAB1kXvMAAAAA")
    assert response["X-Request-ID"] == "ZKx3aH8AAQEAAB1kXvMAAAAA"


@pytest.mark.parametrize("error", ["OperationalError", "InterfaceError"])
def test_an_unreachable_database_is_a_503_not_a_500(client_for, make_user, monkeypatch, error):
    from django import db

    from apps.core.api import views

    def unreachable(self, request):
        raise getattr(db, error)(2013, "Lost connection to server during query")

    monkeypatch.setattr(views.MeView, "get", unreachable)
    response = client_for(make_user("erin")).get("/api/me/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["code"] == "database_unavailable"
    assert response.json()["request_id"] == response["X-Request-ID"]


def test_other_database_errors_stay_server_errors(client_for, make_user, monkeypatch):
    from django.db import IntegrityError

    from apps.core.api import views

    def broken(self, request):
        raise IntegrityError(1062, "Duplicate entry")

    monkeypatch.setattr(views.MeView, "get", broken)
    client = client_for(make_user("frank"))
    client.raise_request_exception = False
    assert client.get("/api/me/").status_code == 500


def test_a_chunked_body_is_refused_with_a_json_411_not_read_as_empty(client_for, make_user):
    response = client_for(make_user("gina", staff=True)).generic(
        "POST", "/api/upstreams/", b"", content_type="application/json", HTTP_TRANSFER_ENCODING="chunked"
    )
    assert response.status_code == 411
    assert response.json()["code"] == "length_required"
