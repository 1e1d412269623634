"""/api/alerts/ (auditors read) and /api/alerts/rules/ (administrators edit, auditors read):
permissions, filters, validation codes, and rule changes recorded in the trail."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.alerts.api.serializers import AlertRuleSerializer
from apps.alerts.models import Alert, AlertRule
from apps.audit.models import AuditEvent
from apps.gateway.models import Upstream

pytestmark = pytest.mark.django_db

RULE = {"name": "burst", "kind": "denials", "threshold": 5, "window_minutes": 2, "grouping": "token"}


@pytest.fixture
def auditor(client_for, make_user):
    return client_for(make_user(groups=("auditor",)))


@pytest.fixture
def admin(client_for, admin_user):
    return client_for(admin_user)


def fired(subject="token k3J9x2Qa", kind="denials", delivered=False):
    rule = AlertRule.objects.filter(kind=kind).first()
    from django.utils import timezone

    return Alert.objects.create(rule=rule, rule_name=rule.name, kind=kind, subject=subject, dedup_key=subject,
                                delivered_at=timezone.now() if delivered else None)  # fmt: skip


def test_auditors_list_alerts_newest_first(auditor):
    older, newer = fired("a"), fired("b", kind="verify_failed", delivered=True)
    body = auditor.get("/api/alerts/").json()
    assert [a["id"] for a in body["results"]] == [newer.pk, older.pk]
    assert body["results"][0]["delivered"] is True and body["results"][1]["delivered"] is False
    assert auditor.get(f"/api/alerts/{older.pk}/").json()["subject"] == "a"


@pytest.mark.parametrize(("query", "subjects"), [
    ("kind=verify_failed", ["b"]), ("delivered=false", ["a"]), ("delivered=true", ["b"]), ("subject=a", ["a"]),
])  # fmt: skip
def test_alerts_can_be_filtered(auditor, query, subjects):
    fired("a"), fired("b", kind="verify_failed", delivered=True)
    assert [a["subject"] for a in auditor.get(f"/api/alerts/?{query}").json()["results"]] == subjects


@pytest.mark.parametrize("query", ["delivered=maybe", "kind=nonsense", "fired_after=yesterday", "rule=1.5"])
def test_a_filter_it_cannot_read_is_a_400(auditor, query):
    response = auditor.get(f"/api/alerts/?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["code"]


def test_users_who_are_not_auditors_see_no_alerts(client_for, make_user):
    assert client_for(make_user()).get("/api/alerts/").status_code == 403
    assert client_for(make_user()).get("/api/alerts/rules/").status_code == 403
    assert APIClient().get("/api/alerts/").status_code in (401, 403)


def test_a_token_limited_to_some_upstreams_is_refused(client_for, make_user, token_for):
    user = make_user(groups=("auditor",))
    token = token_for(user, all_upstreams=False, upstreams=[Upstream.objects.create(name="crm", base_url="http://c")])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = api.get("/api/alerts/")
    assert response.status_code == 403 and response.json()["code"] == "token_scope"


def test_auditors_read_rules_but_may_not_change_them(auditor):
    assert {r["name"] for r in auditor.get("/api/alerts/rules/").json()["results"]} >= {"denials per token"}
    assert auditor.post("/api/alerts/rules/", RULE, format="json").status_code == 403


def test_an_administrator_creates_changes_and_deletes_a_rule_each_recorded(admin):
    response = admin.post("/api/alerts/rules/", RULE, format="json")
    assert response.status_code == 201, response.content
    url, pk = response.json()["url"], str(response.json()["id"])
    assert admin.patch(url, {"enabled": False}, format="json").json()["enabled"] is False
    alert = Alert.objects.create(rule_id=int(pk), rule_name="burst", kind="denials", subject="x", dedup_key="x")
    assert admin.delete(url).status_code == 204
    recorded = AuditEvent.objects.filter(object_type="alerts.alertrule", object_id=pk).order_by("id")
    assert [e.event_type for e in recorded] == ["alert_rule.created", "alert_rule.updated", "alert_rule.deleted"]
    assert recorded[1].changes == {"enabled": [True, False]}
    alert.refresh_from_db()
    assert alert.rule_id is None and alert.rule_name == "burst"  # the alert outlives its rule


@pytest.mark.parametrize(("change", "field", "code"), [
    ({"grouping": ""}, "grouping", "grouping_required"),
    ({"window_minutes": 0}, "window_minutes", "window_required"),
    ({"kind": "verify_failed"}, "grouping", "grouping_not_allowed"),
    ({"kind": "nonsense"}, "kind", "invalid_choice"),
    ({"threshold": 0}, "threshold", "min_value"),
    ({"threshold": 10_001}, "threshold", "max_value"),
    ({"window_minutes": 7 * 24 * 60 + 1}, "window_minutes", "max_value"),
    ({"name": "x" * 101}, "name", "max_length"),
    ({"name": "denials per token"}, "name", "unique"),
])  # fmt: skip
def test_a_rule_that_cannot_fire_is_a_400_with_a_code(admin, change, field, code):
    response = admin.post("/api/alerts/rules/", {**RULE, **change}, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid" and list(body["errors"]) == [field]
    # The API's error shape (apps.core.errors) names the field; each error keeps its own code.
    serializer = AlertRuleSerializer(data={**RULE, **change}, context={"request": None})
    assert not serializer.is_valid() and serializer.errors[field][0].code == code


def test_a_partial_change_is_checked_against_the_whole_rule(admin):
    rule = AlertRule.objects.get(name="denials per token")
    response = admin.patch(f"/api/alerts/rules/{rule.pk}/", {"grouping": ""}, format="json")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["grouping"]


def test_the_schema_and_the_api_root_list_alerts(admin):
    schema = admin.get("/api/schema/?format=json").json()
    paths = {"/api/alerts/", "/api/alerts/{id}/", "/api/alerts/rules/", "/api/alerts/rules/{id}/"}
    assert paths <= set(schema["paths"])
    assert admin.get("/api/").json()["alerts"].endswith("/api/alerts/")


def test_the_dashboard_names_the_alerts_url_for_its_panel(client, make_user):
    client.force_login(make_user(groups=("auditor",)))
    page = client.get("/audit/dashboard/")
    assert page.status_code == 200 and 'data-alerts-url="/api/alerts/"' in page.content.decode()


def test_the_schema_says_an_alerts_rule_may_be_null(admin):
    alert = admin.get("/api/schema/?format=json").json()["components"]["schemas"]["Alert"]["properties"]
    assert alert["rule"].get("nullable") is True
