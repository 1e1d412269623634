"""A CSRF refusal under /api/ is JSON 403 ``csrf_failed``; the browsable API's login keeps working
(``apps.core.csrf``)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

LOGIN = "/api/auth/login/"


@pytest.fixture
def browser() -> Client:
    return Client(enforce_csrf_checks=True)


def login_form_token(browser: Client) -> str:
    page = browser.get(LOGIN)
    assert page.status_code == 200
    return re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1).decode()


def test_the_browsable_apis_login_form_logs_in(browser, make_user):
    make_user("erin")
    token = login_form_token(browser)
    response = browser.post(LOGIN, {"username": "erin", "password": "not-used-pw-123", "csrfmiddlewaretoken": token,
                                    "next": "/api/"})  # fmt: skip
    assert (response.status_code, response["Location"]) == (302, "/api/")
    assert browser.get("/api/me/").json()["username"] == "erin"


@pytest.mark.parametrize("path", [LOGIN, "/api/auth/logout/"])
def test_a_login_or_logout_without_a_csrf_token_is_json_403_csrf_failed(browser, make_user, path):
    make_user("erin")
    response = browser.post(path, {"username": "erin", "password": "not-used-pw-123"})
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert (body["code"], body["request_id"]) == ("csrf_failed", response["X-Request-ID"])
    assert "CSRF" in body["detail"]


def test_a_session_call_to_the_api_without_a_csrf_token_is_403_csrf_failed(browser, admin_user):
    browser.force_login(admin_user)
    response = browser.post("/api/upstreams/", {"name": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"


def test_a_token_call_needs_no_csrf_token(client_for, admin_user):
    response = client_for(admin_user).post("/api/policy/check", {}, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_outside_the_api_a_browser_keeps_djangos_page(browser):
    response = browser.post("/admin/login/", {"username": "x", "password": "y"}, HTTP_ACCEPT="text/html")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


def test_outside_the_api_a_json_client_gets_json(browser):
    response = browser.post("/admin/login/", {"username": "x"}, HTTP_ACCEPT="application/json")
    assert (response.status_code, response.json()["code"]) == (403, "csrf_failed")
