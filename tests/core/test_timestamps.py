"""Every date-time the API reads converts into every time zone, or is a 400 (``apps.core.timestamps``).

The cases are found in the OpenAPI schema: every query parameter and every request body
field with ``format: date-time``, so a filter or field added later is covered too.
"""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from apps.gateway.models import AccessRule, Upstream

pytestmark = pytest.mark.django_db

# Within a day of Python's first or last datetime: each overflows once some offset applies.
OVERFLOWING_IN_UTC = [
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC (DRF's fields refused these already)
    "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
]
OVERFLOWING_ELSEWHERE = [
    "0001-01-01T00:00:00Z",  # year 1 in UTC, before it in any zone west of UTC
    "0001-01-01T05:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T10:00:00+00:00",
    "0001-01-01T00:00:00",  # naive: in the site's time zone (UTC)
]
EXTREMES = OVERFLOWING_IN_UTC + OVERFLOWING_ELSEWHERE
SCHEMA = SchemaGenerator().get_schema(request=None, public=True)


def is_date_time(schema: dict) -> bool:
    return schema.get("format") == "date-time" or any(is_date_time(s) for s in schema.get("anyOf", ()))


def date_time_query_parameters() -> list[tuple[str, str]]:
    return [
        (path, parameter["name"])
        for path, operations in SCHEMA["paths"].items()
        for operation in [operations.get("get")]
        if operation
        for parameter in operation.get("parameters", ())
        if parameter["in"] == "query" and is_date_time(parameter.get("schema", {}))
    ]


def date_time_body_fields() -> list[tuple[str, str]]:
    found = []
    for path, operations in SCHEMA["paths"].items():
        body = operations.get("post", {}).get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            component = SCHEMA["components"]["schemas"][body["schema"]["$ref"].rpartition("/")[2]]
            found += [(path, name) for name, field in component["properties"].items() if is_date_time(field)]
    return found


def test_the_schema_has_the_date_times_this_file_checks():
    assert {("/api/audit/events/", "occurred_after"), ("/api/audit/stats", "occurred_before")} <= set(
        date_time_query_parameters()
    )
    assert {("/api/rules/", "valid_from"), ("/api/policy/check", "at")} <= set(date_time_body_fields())


@pytest.fixture
def admin(client_for, admin_user):
    api = client_for(admin_user)
    api.raise_request_exception = False  # a bug answers 500, as deployed, instead of raising here
    return api


@pytest.mark.parametrize("value", EXTREMES)
@pytest.mark.parametrize(("path", "name"), date_time_query_parameters())
def test_every_date_time_filter_refuses_a_value_that_overflows_with_a_400(admin, path, name, value):
    response = admin.get(path, {name: value})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert "Out of range" in response.json()["errors"][name][0]


@pytest.mark.parametrize("value", OVERFLOWING_ELSEWHERE)
@pytest.mark.parametrize(("path", "name"), date_time_body_fields())
def test_every_date_time_body_field_refuses_a_value_that_overflows(admin, path, name, value):
    response = admin.post(path, {name: value}, format="json")
    assert response.status_code == 400, response.content
    assert "out of range" in response.json()["errors"][name][0].lower()


@pytest.mark.parametrize(("path", "name"), date_time_query_parameters())
def test_the_first_and_last_date_times_accepted_still_filter(admin, path, name):
    # 0001-01-02T00:00Z: the stats' default window (the 24 hours before it) still starts in year 1.
    for value in ("0001-01-02T00:00:00Z", "9999-12-30T23:59:59+00:00", "2026-03-01T10:00:00+14:00"):
        response = admin.get(path, {name: value})
        assert response.status_code == 200, (value, response.content)


def test_a_policy_check_at_the_end_of_time_in_a_far_east_time_zone_is_a_400(admin, admin_user, upstream_server):
    # The policy reads the time in the rule's zone (UTC+14 here): 9999-12-31T23:00Z was a 500 there.
    crm = Upstream.objects.create(name="crm", base_url=upstream_server.url, internal=True)
    AccessRule.objects.create(upstream=crm, subject="any", time_zone="Pacific/Kiritimati", start_time="08:00",
                              end_time="18:00")  # fmt: skip
    body = {"user": admin_user.username, "upstream": "crm", "method": "GET", "path": "/x"}
    assert admin.post("/api/policy/check", {**body, "at": "2026-03-02T09:00:00Z"}, format="json").status_code == 200
    response = admin.post("/api/policy/check", {**body, "at": "9999-12-31T23:00:00Z"}, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["at"]
