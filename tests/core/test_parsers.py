"""JSON nested too deep is a 400 ``parse_error`` on every endpoint that reads JSON (``apps.core.parsers``).

The endpoints are found in the OpenAPI schema (every operation with a JSON request body), so
one added later is covered too.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from apps.audit.models import AuditEvent
from apps.core.parsers import MAX_DEPTH, nested_deeper_than
from apps.gateway.models import AccessRule, Upstream
from apps.gateway.tokens import create_token

pytestmark = pytest.mark.django_db

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
JSON_OPERATIONS = [
    (method, path)
    for path, operations in SCHEMA["paths"].items()
    for method, operation in operations.items()
    if "application/json" in operation.get("requestBody", {}).get("content", {})
    and path != "/api/introspect"  # upstreams authenticate there first: see its own test below
]
DEEP_ARRAYS = "[" * 10_000 + "]" * 10_000
DEEP_OBJECTS = '{"a":' * 10_000 + "1" + "}" * 10_000


@pytest.fixture
def admin(client_for, admin_user):
    api = client_for(admin_user)
    api.raise_request_exception = False  # a bug answers 500, as deployed, instead of raising here
    return api


@pytest.fixture
def object_ids(admin_user, upstream_server) -> dict[str, str]:
    """An object of each kind, for the operations on one ({id} in the path)."""
    crm = Upstream.objects.create(name="crm", base_url=upstream_server.url, internal=True)
    rule = AccessRule.objects.create(upstream=crm, subject="any")
    token, _ = create_token(user=admin_user, label="x", expires_at=timezone.now() + timedelta(days=1),
                            all_upstreams=True, management_api=True)  # fmt: skip
    return {"upstreams": str(crm.pk), "rules": str(rule.pk), "tokens": str(token.pk)}


def test_the_schema_lists_the_json_endpoints_this_file_checks():
    assert {("post", "/api/upstreams/"), ("patch", "/api/rules/{id}/"), ("post", "/api/policy/check")} <= set(
        JSON_OPERATIONS
    )


@pytest.mark.parametrize("body", [DEEP_ARRAYS, DEEP_OBJECTS], ids=["arrays", "objects"])
@pytest.mark.parametrize(("method", "path"), JSON_OPERATIONS)
def test_json_nested_10000_levels_deep_is_a_400_parse_error(admin, object_ids, method, path, body):
    url = path.replace("{id}", object_ids.get(path.split("/")[2], "1"))
    before = AuditEvent.objects.count()
    response = getattr(admin, method)(url, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "parse_error"
    assert "nested deeper than" in response.json()["detail"]
    assert AuditEvent.objects.count() == before  # nothing was changed, so nothing to record


def test_json_just_deeper_than_the_limit_is_refused_and_at_the_limit_read(admin):
    at_limit = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)  # in the body object: MAX_DEPTH levels
    response = admin.post("/api/upstreams/", f'{{"allowed_methods": {at_limit}}}', content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")  # read, then validated
    too_deep = "[" + at_limit + "]"
    response = admin.post("/api/upstreams/", f'{{"allowed_methods": {too_deep}}}', content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "parse_error")


def test_introspection_reads_deep_json_as_no_assertion(client, upstream_server):
    Upstream.objects.create(name="crm", base_url=upstream_server.url, internal=True, identity_key="k" * 32)
    auth = "Basic " + base64.b64encode(b"crm:" + b"k" * 32).decode()
    client.raise_request_exception = False
    response = client.post("/api/introspect", DEEP_ARRAYS, content_type="application/json", HTTP_AUTHORIZATION=auth)
    assert (response.status_code, response.json()) == (200, {"active": False})


def test_the_depth_is_measured_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert nested_deeper_than(deep, MAX_DEPTH)
    assert not nested_deeper_than({"a": [1, {"b": []}]}, 4)
    assert nested_deeper_than({"a": [1, {"b": []}]}, 3)
