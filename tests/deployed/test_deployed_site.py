"""The deployed system, over HTTPS, as a user and an integrating system see it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from tests.deployed.conftest import (
    ACCESS_LOG,
    BASE_URL,
    apache_defines,
    daemon_option,
    daemons,
    logged_by_apache,
    settled_event,
)

pytestmark = pytest.mark.deployed


def test_http_redirects_to_https():
    response = requests.get(BASE_URL.replace("https://", "http://") + "/api/me/", allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == f"{BASE_URL}/api/me/"


def test_the_api_needs_a_token_and_apache_passes_it_through(http, admin_token):
    anonymous = http.get(f"{BASE_URL}/api/me/", timeout=10)
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "not_authenticated")
    # A 200 here proves WSGIPassAuthorization: without it Apache drops the header.
    me = http.get(f"{BASE_URL}/api/me/", headers={"Authorization": f"Token {admin_token}"}, timeout=10)
    assert me.status_code == 200
    assert me.json()["username"] == "admin"


def test_https_responses_carry_hsts_and_no_server_version(http):
    response = http.get(f"{BASE_URL}/api/health/", timeout=10)
    assert response.json() == {"status": "ok"}
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert response.headers["Server"] == "Apache"


def test_the_browsable_api_is_html_and_its_css_is_served(admin):
    page = admin.get(f"{BASE_URL}/api/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    stylesheets = re.findall(r'href="(/static/[^"]+\.css)"', page.text)
    assert stylesheets, "the page links no stylesheet"
    for path in stylesheets:
        css = admin.get(f"{BASE_URL}{path}", timeout=10)
        assert css.status_code == 200, path
        assert css.headers["Content-Type"].startswith("text/css")


def test_the_login_page_for_the_browsable_api_is_served(http):
    response = http.get(f"{BASE_URL}/api/auth/login/", timeout=10)
    assert response.status_code == 200
    assert "csrfmiddlewaretoken" in response.text
    assert "secure" in response.headers["Set-Cookie"].lower()


@pytest.mark.parametrize(
    ("group", "name"),
    [("auditgate-gw", "GW"), ("auditgate-gw1", "GW"), ("auditgate-gw2", "GW"), ("auditgate-api", "API")],
)
def test_the_daemon_groups_run_the_configured_processes_and_threads(group, name):
    defines = apache_defines()
    processes, threads = int(defines[f"AUDITGATE_{name}_PROCESSES"]), int(defines[f"AUDITGATE_{name}_THREADS"])
    running = daemons(group)
    assert len(running) == processes
    assert {user for _, user in running} == {defines["AUDITGATE_USER"]}
    for pid, _ in running:
        status = Path(f"/proc/{pid}/status").read_text()
        thread_count = int(re.search(r"^Threads:\s+(\d+)", status, re.MULTILINE).group(1))
        # The request threads plus mod_wsgi's few housekeeping threads (monitor, deadlock, reaper).
        assert threads < thread_count <= threads + 6, (pid, thread_count)


def test_a_proxied_request_succeeds_and_is_audited_once(admin, registered_upstream):
    response = admin.get(f"{BASE_URL}/gw/{registered_upstream}/allowed/report?year=2024", timeout=10)
    assert response.status_code == 200
    echoed = response.json()
    assert (echoed["path"], echoed["query"]) == ("/allowed/report", "year=2024")
    assert "authorization" not in echoed["headers"]
    request_id = response.headers["X-Request-ID"]
    assert echoed["headers"]["x-request-id"] == request_id

    event = settled_event(admin, request_id)
    assert event["actor_username"] == "admin"
    assert (event["upstream_name"], event["method"], event["path"]) == (registered_upstream, "GET", "/allowed/report")
    assert (event["decision"], event["reason"], event["status"], event["upstream_status"]) == (
        "allow",
        "allowed",
        200,
        200,
    )
    assert event["source_ip"] == "127.0.0.1"
    assert event["response_bytes"] == len(response.content)
    assert event["error"] == ""


def test_a_denied_request_gets_its_reason_and_is_audited_once(admin, registered_upstream):
    response = admin.get(f"{BASE_URL}/gw/{registered_upstream}/secret", timeout=10)
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "no_matching_rule"
    assert body["request_id"] == response.headers["X-Request-ID"]

    events = admin.get(f"{BASE_URL}/api/audit/events/", params={"request_id": body["request_id"]}, timeout=10)
    (event,) = events.json()["results"]
    assert (event["decision"], event["reason"], event["status"]) == ("deny", "no_matching_rule", 403)
    assert event["path"] == "/secret"


def test_apaches_access_log_and_the_audit_trail_share_the_request_id(admin, registered_upstream):
    response = admin.get(f"{BASE_URL}/gw/{registered_upstream}/allowed/joined", timeout=10)
    request_id = response.headers["X-Request-ID"]
    assert logged_by_apache(request_id)
    log_lines = [line for line in ACCESS_LOG.read_text().splitlines() if line.endswith(" " + request_id)]
    assert len(log_lines) == 1
    assert f"/gw/{registered_upstream}/allowed/joined" in log_lines[0]


def test_a_body_over_the_upstreams_limit_gets_413_from_the_gateway(admin, registered_upstream, upstream_server):
    upstream = admin.get(f"{BASE_URL}/api/upstreams/", params={"name": registered_upstream}).json()["results"][0]
    assert admin.patch(upstream["url"], json={"max_request_bytes": 1000}).status_code == 200
    time.sleep(1.1)  # the documented bound for a change to reach every daemon process
    seen_before = len(upstream_server.server.seen)
    response = admin.post(f"{BASE_URL}/gw/{registered_upstream}/allowed/x", data=b"x" * 1001, timeout=30)
    assert (response.status_code, response.json()["code"]) == (413, "request_too_large")
    assert len(upstream_server.server.seen) == seen_before


def test_a_body_over_apaches_limit_is_refused_outside_the_gateway(admin):
    limit = int(apache_defines()["AUDITGATE_LIMIT_REQUEST_BODY"])
    response = admin.post(f"{BASE_URL}/api/upstreams/", data=b"x" * (limit + 1), timeout=30)
    assert response.status_code == 413
    assert response.headers["X-Request-ID"]  # Apache's own errors carry the request id too


def test_apache_has_a_worker_for_every_request_the_daemon_groups_can_hold_plus_their_nested_calls():
    mpm = Path("/etc/apache2/conf-available/auditgate-mpm.conf").read_text()
    workers = int(re.search(r"^\s*MaxRequestWorkers\s+(\d+)", mpm, re.MULTILINE).group(1))
    per_child = int(re.search(r"^\s*ThreadsPerChild\s+(\d+)", mpm, re.MULTILINE).group(1))
    defines = apache_defines()
    held = 0
    for group, name in (("auditgate-gw", "GW"), ("auditgate-api", "API")):
        threads = int(defines[f"AUDITGATE_{name}_PROCESSES"]) * int(defines[f"AUDITGATE_{name}_THREADS"])
        held += threads + int(daemon_option(group, "listen-backlog"))
        if name == "GW":
            # The nested levels 1 and 2: one call in flight per thread of the level below.
            held += 2 * threads
    assert workers >= held
    # Every child is started at once (none reaped or spawned under load).
    assert int(re.search(r"^\s*StartServers\s+(\d+)", mpm, re.MULTILINE).group(1)) * per_child >= workers
