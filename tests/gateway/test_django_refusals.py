"""Requests Django refuses before the gateway view can (a Host outside ALLOWED_HOSTS): still
one audit event each under /gw/, and the API's JSON error shape everywhere."""

from __future__ import annotations

import json

import pytest

from apps.audit.models import AuditEvent
from apps.gateway.django_refusals import upstream_named_in
from apps.gateway.wsgi import make_application
from tests.gateway.test_wsgi_application import serve

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def application():
    return make_application()


def test_a_gateway_request_for_a_host_not_served_is_refused_and_audited(application):
    status, headers, body = serve(application, "/gw/echo/reports?q=1", HTTP_HOST="evil.example")
    error = json.loads(body)
    assert status.startswith("400 ")
    assert error["code"] == "host_not_allowed"
    assert headers["X-Request-ID"] == error["request_id"]
    event = AuditEvent.objects.get(request_id=error["request_id"])
    assert (event.event_type, event.decision, event.reason, event.status) == (
        "gateway.denied",
        "deny",
        "host_not_allowed",
        400,
    )
    assert (event.host, event.upstream_name, event.path, event.query) == (
        "evil.example",
        "echo",
        "/gw/echo/reports",
        "q=1",
    )


def test_an_api_request_for_a_host_not_served_gets_a_code_and_no_event(application):
    status, _, body = serve(application, "/api/health/", HTTP_HOST="evil.example")
    assert status.startswith("400 ")
    assert json.loads(body)["code"] == "host_not_allowed"
    assert not AuditEvent.objects.exists()


def test_the_upstream_is_named_by_the_first_segment_after_gw():
    assert upstream_named_in("/gw/crm/a/b") == "crm"
    assert upstream_named_in("/gw/crm") == "crm"
    assert upstream_named_in("/gw/") == ""
    assert upstream_named_in("/gw") == ""
