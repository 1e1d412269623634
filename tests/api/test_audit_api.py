from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def auditor(client_for, make_user):
    return client_for(make_user(groups=("auditor",)))


def test_events_are_listed_newest_first_with_cursor_pages(auditor, make_event):
    events = [make_event(request_id=f"r{i}") for i in range(5)]
    first = auditor.get("/api/audit/events/?page_size=2").json()
    assert [e["id"] for e in first["results"]] == [events[4].id, events[3].id]
    second = auditor.get(first["next"]).json()
    assert [e["id"] for e in second["results"]] == [events[2].id, events[1].id]
    assert "count" not in first  # No COUNT(*) over the audit table.


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("actor=bob", {"bob"}),
        ("upstream=hr", {"hr-call"}),
        ("decision=deny", {"denied"}),
        ("status=502", {"bad-gateway"}),
        ("request_id=denied", {"denied"}),
    ],
)
def test_events_can_be_filtered(auditor, query, expected, make_event):
    make_event(request_id="bob", actor_username="bob")
    make_event(request_id="hr-call", upstream_name="hr")
    make_event(request_id="denied", decision="deny", reason="no_matching_rule", status=403)
    make_event(request_id="bad-gateway", status=502)
    results = auditor.get(f"/api/audit/events/?{query}").json()["results"]
    assert {e["request_id"] for e in results} == expected


def test_events_can_be_filtered_by_time_range(auditor, make_event):
    now = timezone.now()
    make_event(request_id="old", occurred_at=now - timedelta(days=2))
    make_event(request_id="new", occurred_at=now)
    after = (now - timedelta(days=1)).isoformat()
    only = {"event_type": "gateway.request"}  # not the auditor's own token.created event
    results = auditor.get("/api/audit/events/", {"occurred_after": after, **only}).json()["results"]
    assert [e["request_id"] for e in results] == ["new"]
    results = auditor.get("/api/audit/events/", {"occurred_before": after, **only}).json()["results"]
    assert [e["request_id"] for e in results] == ["old"]


def test_an_invalid_filter_value_is_a_400_not_a_500(auditor):
    response = auditor.get("/api/audit/events/?occurred_after=yesterday")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_nobody_can_change_events_through_the_api(client_for, admin_user, method, make_event):
    event = make_event()
    url = "/api/audit/events/" if method == "post" else f"/api/audit/events/{event.id}/"
    response = getattr(client_for(admin_user), method)(url, {"status": 500}, format="json")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert AuditEvent.objects.get(pk=event.pk).status == 200


def test_an_event_has_a_detail_view(auditor, make_event):
    event = make_event(request_id="abc")
    assert auditor.get(f"/api/audit/events/{event.id}/").json()["request_id"] == "abc"


def test_events_can_be_filtered_by_type(auditor, make_event):
    make_event(request_id="g")
    results = auditor.get("/api/audit/events/", {"event_type": "token.created"}).json()["results"]
    assert [e["event_type"] for e in results] == ["token.created"]  # the auditor's own token
