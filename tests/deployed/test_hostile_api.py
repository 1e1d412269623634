"""Hostile input against the deployed management and audit API (issue 12, items 3 and 14).

Each case was a 500 (or Django's HTML 403) through Apache; each is now a 400 (403) with a
JSON code, and is accounted for: the API does not audit a request it refused before acting,
so Apache's access log has its line with the request id.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from urllib.parse import quote, urlencode

import pytest

from tests.deployed.conftest import BASE_URL, https_session, logged_by_apache, manage_ok
from tests.deployed.test_hostile_inputs import Raw

pytestmark = pytest.mark.deployed

DEEP_ARRAYS = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECTS = b'{"a":' * 10_000 + b"1" + b"}" * 10_000


def cursor(text: str) -> str:
    return quote(base64.b64encode(text.encode()).decode())


@pytest.fixture(scope="module")
def raw() -> Raw:
    return Raw()


def refused(raw: Raw, token: str, method: str, target: str, body: bytes | None = None, **headers: str) -> dict:
    """Sends the request as written; asserts the 4xx JSON error shape and the access-log line."""
    sent = {"Authorization": f"Bearer {token}", **headers}
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    status, response_headers, content = raw.send(method, target, sent, body)
    assert 400 <= status < 500, (status, content[:300])
    assert response_headers["Content-Type"] == "application/json", content[:300]
    error = json.loads(content)
    assert error["request_id"] == response_headers["X-Request-ID"]
    assert token.encode() not in content
    assert logged_by_apache(error["request_id"]), error["request_id"]
    return {"status": status, **error}


@pytest.mark.parametrize(
    "value",
    [
        cursor("p=not-a-date"),
        cursor("p=0001-01-01 00:00:00-01:00"),
        cursor("p=9999-12-31 23:59:59-01:00&r=1"),
        cursor("o=x"),
        cursor("x=1"),
        "%25%25%25%25",
        "cD0yMDI2LTAxLTAx!!",
    ],
)
def test_a_tampered_cursor_is_a_400_invalid_cursor(raw, admin_token, value):
    error = refused(raw, admin_token, "GET", f"/api/audit/events/?cursor={value}")
    assert (error["status"], error["code"]) == (400, "invalid_cursor")


@pytest.mark.parametrize("path", ["/api/audit/events/", "/api/audit/events/export/", "/api/audit/stats"])
@pytest.mark.parametrize(
    "query",
    [
        {"occurred_after": "0001-01-01T00:00:00+01:00"},
        {"occurred_before": "9999-12-31T23:59:59-01:00"},
        {"occurred_before": "0001-01-01T00:00:00Z"},  # the stats' default window starts a day earlier
    ],
)
def test_a_date_filter_that_overflows_in_utc_is_a_400(raw, admin_token, path, query):
    error = refused(raw, admin_token, "GET", f"{path}?{urlencode(query)}")
    assert (error["status"], error["code"]) == (400, "invalid")
    assert "Out of range" in error["errors"][next(iter(query))][0]


def test_a_policy_check_at_the_end_of_time_is_a_400(raw, admin_token):
    body = {"user": "admin", "upstream": "nowhere", "method": "GET", "path": "/", "at": "9999-12-31T23:00:00Z"}
    error = refused(raw, admin_token, "POST", "/api/policy/check", json.dumps(body).encode())
    assert (error["status"], error["code"]) == (400, "invalid")
    assert "Out of range" in error["errors"]["at"][0]


@pytest.mark.parametrize("size", ["%C2%B2", "0", "501", "1.5"])
def test_a_page_size_that_is_not_a_number_in_range_is_a_400(raw, admin_token, size):
    error = refused(raw, admin_token, "GET", f"/api/audit/events/?page_size={size}")
    assert (error["status"], error["code"], list(error["errors"])) == (400, "invalid", ["page_size"])


@pytest.mark.parametrize("body", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
@pytest.mark.parametrize("path", ["/api/upstreams/", "/api/rules/", "/api/tokens/", "/api/policy/check"])
def test_json_nested_10000_levels_deep_is_a_400_parse_error(raw, admin_token, path, body):
    error = refused(raw, admin_token, "POST", path, body)
    assert (error["status"], error["code"]) == (400, "parse_error")


def test_a_login_without_a_csrf_token_is_json_403_csrf_failed(raw):
    form = b"username=admin&password=wrong"
    sent = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}
    status, headers, content = raw.send("POST", "/api/auth/login/", sent, form)
    assert (status, headers["Content-Type"]) == (403, "application/json"), content[:300]
    error = json.loads(content)
    assert error["code"] == "csrf_failed"
    assert logged_by_apache(headers["X-Request-ID"])


@pytest.fixture(scope="module")
def api_login() -> tuple[str, str]:
    """A user (no privileges) with a known password, made on the host."""
    username, password = "csrf-user", secrets.token_urlsafe(16)
    manage_ok("shell", "-c", (
        "from django.contrib.auth.models import User\n"
        f"user, _ = User.objects.get_or_create(username={username!r})\n"
        f"user.set_password({password!r}); user.is_active = True; user.save()\n"
    ))  # fmt: skip
    return username, password


def test_the_browsable_apis_login_form_still_works_over_https(api_login):
    username, password = api_login
    with https_session() as browser:
        page = browser.get(f"{BASE_URL}/api/auth/login/?next=/api/me/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        form = {"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/api/me/"}
        response = browser.post(f"{BASE_URL}/api/auth/login/", data=form, headers={"Referer": page.url})
        assert response.status_code == 200, response.text[:300]  # redirected to /api/me/
        assert browser.get(f"{BASE_URL}/api/me/", headers={"Accept": "application/json"}).json()["username"] == username
        # A session call without the CSRF token is refused with the same code.
        refused_call = browser.post(f"{BASE_URL}/api/policy/check", json={}, headers={"Referer": page.url})
        assert (refused_call.status_code, refused_call.json()["code"]) == (403, "csrf_failed")
