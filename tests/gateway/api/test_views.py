import pytest

from apps.audit.models import AuditEvent
from apps.gateway.models import AccessRule, Upstream
from tests.hostile_inputs import SSRF_TARGETS

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client_for, admin_user):
    return client_for(admin_user)


def test_admins_create_read_update_and_delete_upstreams(api):
    created = api.post("/api/upstreams/", {"name": "crm", "base_url": "http://127.0.0.1:8080", "internal": True},
                       format="json")  # fmt: skip
    assert created.status_code == 201, created.json()
    url = created.json()["url"]
    assert api.get(url).json()["base_url"] == "http://127.0.0.1:8080"
    assert api.patch(url, {"enabled": False}, format="json").json()["enabled"] is False
    assert api.delete(url).status_code == 204
    assert not Upstream.objects.exists()


def test_every_change_is_an_audit_event_with_what_changed(api, admin_user):
    created = api.post("/api/upstreams/", {"name": "crm", "base_url": "http://127.0.0.1:1", "internal": True},
                       format="json").json()  # fmt: skip
    api.patch(created["url"], {"read_timeout": 10}, format="json")
    api.delete(created["url"])
    events = list(AuditEvent.objects.filter(object_type="gateway.upstream").order_by("id"))
    assert [e.event_type for e in events] == ["upstream.created", "upstream.updated", "upstream.deleted"]
    assert all((e.actor_id, e.object_id) == (admin_user.id, str(created["id"])) for e in events)
    assert events[1].changes == {"read_timeout": [30.0, 10.0]}
    assert events[0].changes["name"] == [None, "crm"]


def test_upstream_secrets_are_write_only_and_masked_in_the_audit_trail(api):
    payload = {"name": "crm", "base_url": "http://127.0.0.1:1", "internal": True, "credential_header": "X-Api-Key",
               "credential_value": "very-secret-credential", "identity_key": "very-secret-identity"}  # fmt: skip
    response = api.post("/api/upstreams/", payload, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "credential_value" not in body and "identity_key" not in body
    assert (body["has_credential"], body["has_identity_key"], body["credential_header"]) == (True, True, "X-Api-Key")
    assert b"very-secret" not in api.get("/api/upstreams/").content
    event = AuditEvent.objects.get(event_type="upstream.created")
    assert "very-secret" not in str(event.changes)
    assert event.changes["credential_value"] == [None, "********"]


def test_stored_secrets_leave_neither_text_nor_token_in_the_audit_trail(api):
    payload = {"name": "crm", "base_url": "http://127.0.0.1:1", "internal": True, "credential_header": "X-Api-Key",
               "credential_value": "very-secret-credential", "identity_key": "very-secret-identity"}  # fmt: skip
    url = api.post("/api/upstreams/", payload, format="json").json()["url"]
    api.patch(url, {"identity_key": "another-secret-identity", "read_timeout": 10}, format="json")
    api.patch(url, {"description": "only this"}, format="json")  # a save re-encrypts: no change to record
    api.delete(url)
    events = list(AuditEvent.objects.filter(object_type="gateway.upstream").order_by("id"))
    assert [e.changes.get("identity_key") for e in events] == [
        [None, "********"], ["********", "********"], None, ["********", None]
    ]  # fmt: skip
    for event in events:
        assert "gAAAA" not in str(event.changes) and "secret" not in str(event.changes)


def test_a_credential_header_needs_its_value(api):
    payload = {"name": "crm", "base_url": "http://127.0.0.1:1", "internal": True, "credential_header": "X-Api-Key"}
    response = api.post("/api/upstreams/", payload, format="json")
    assert (response.status_code, list(response.json()["errors"])) == (400, ["credential_header"])


@pytest.mark.parametrize("target", SSRF_TARGETS)
def test_registration_refuses_internal_addresses_unless_marked_internal(api, target):
    response = api.post("/api/upstreams/", {"name": "probe", "base_url": target}, format="json")
    assert response.status_code == 400, target
    assert "base_url" in response.json()["errors"]
    assert not Upstream.objects.exists()
    assert not AuditEvent.objects.filter(event_type="upstream.created").exists()


def test_marking_an_upstream_internal_allows_loopback(api):
    response = api.post("/api/upstreams/", {"name": "local", "base_url": "http://127.0.0.1:9", "internal": True},
                        format="json")  # fmt: skip
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("base_url", "field"),
    [("ftp://x", "base_url"), ("http://user:pw@127.0.0.1", "base_url"), ("http://127.0.0.1/#x", "base_url")],
)
def test_malformed_base_urls_are_refused(api, base_url, field):
    response = api.post("/api/upstreams/", {"name": "x", "base_url": base_url, "internal": True}, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_an_invalid_upstream_name_is_refused_with_field_errors(api):
    response = api.post("/api/upstreams/", {"name": "bad name", "base_url": "http://127.0.0.1", "internal": True},
                        format="json")  # fmt: skip
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "name" in response.json()["errors"]


def test_timeouts_are_bounded_below_apaches_socket_timeout(api):
    payload = {"name": "x", "base_url": "http://127.0.0.1", "internal": True, "read_timeout": 600}
    response = api.post("/api/upstreams/", payload, format="json")
    assert response.status_code == 400
    assert "read_timeout" in response.json()["errors"]


@pytest.fixture
def crm():
    return Upstream.objects.create(name="crm", base_url="http://127.0.0.1:1", internal=True)


def test_admins_manage_rules_by_names(api, make_user, crm):
    make_user("alice")
    payload = {"upstream": "crm", "user": "alice", "methods": ["POST", "GET", "GET"], "path_pattern": "/api",
               "source_cidrs": ["10.0.0.0/8"], "days": [4, 0], "start_time": "09:00", "end_time": "17:00",
               "time_zone": "Europe/Berlin", "priority": 10, "effect": "deny"}  # fmt: skip
    response = api.post("/api/rules/", payload, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["methods"], body["days"], body["subject"]) == (["GET", "POST"], [0, 4], "user")
    rule = AccessRule.objects.get()
    assert (rule.user.username, rule.upstream.name, rule.path_pattern, rule.effect) == ("alice", "crm", "/api", "deny")
    assert api.get("/api/rules/?user=alice").json()["results"][0]["id"] == rule.id
    assert AuditEvent.objects.filter(event_type="rule.created", object_id=str(rule.id)).exists()


def test_a_rule_for_any_authenticated_caller_names_nobody(api, crm):
    response = api.post("/api/rules/", {"upstream": "crm", "subject": "any", "path_match": "glob",
                                        "path_pattern": "/public/**"}, format="json")  # fmt: skip
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"methods": ["GET"]}, "subject"),
        ({"user": "alice", "group": "ops", "methods": ["GET"]}, "subject"),
        ({"subject": "any", "user": "alice"}, "subject"),
        ({"subject": "group", "user": "alice"}, "subject"),
        ({"user": "alice", "methods": ["CONNECT"]}, "methods"),
        ({"user": "alice", "path_pattern": "/a/../b"}, "path_pattern"),
        ({"user": "alice", "path_pattern": "no-slash"}, "path_pattern"),
        ({"user": "alice", "path_pattern": "/a%2fb"}, "path_pattern"),
        ({"user": "alice", "source_cidrs": ["10.0.0.0/33"]}, "source_cidrs"),
        ({"user": "alice", "days": [7]}, "days"),
        ({"user": "alice", "start_time": "09:00"}, "start_time"),
        ({"user": "alice", "time_zone": "Mars/Olympus"}, "time_zone"),
        ({"user": "alice", "valid_from": "2026-02-01T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"}, "valid_until"),
        ({"user": "alice", "effect": "maybe"}, "effect"),
        ({"upstream": "nope", "user": "alice"}, "upstream"),
    ],
)
def test_invalid_rules_are_refused(api, make_user, crm, payload, field):
    from django.contrib.auth.models import Group

    Group.objects.create(name="ops")
    make_user("alice")
    response = api.post("/api/rules/", {"upstream": "crm", **payload}, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()
    assert not AccessRule.objects.exists()


def test_ordinary_users_cannot_create_upstreams(client_for, make_user):
    response = client_for(make_user()).post("/api/upstreams/", {"name": "x", "base_url": "http://x"}, format="json")
    assert response.status_code == 403
    assert not Upstream.objects.exists()


def test_the_policy_dry_run_explains_the_decision(api, make_user, crm):
    alice = make_user("alice")
    rule = AccessRule.objects.create(upstream=crm, user=alice, methods=["GET"], path_pattern="/reports",
                                     source_cidrs=["10.0.0.0/8"])  # fmt: skip
    ask = {"user": "alice", "upstream": "crm", "method": "GET", "path": "/reports/q1", "source_ip": "10.0.0.9"}
    allowed = api.post("/api/policy/check", ask, format="json").json()
    assert (allowed["allowed"], allowed["code"], allowed["rule"]) == (True, "allowed", rule.id)
    assert allowed["rule_url"].endswith(f"/api/rules/{rule.id}/")
    denied = api.post("/api/policy/check", {**ask, "source_ip": "192.0.2.1"}, format="json").json()
    assert (denied["allowed"], denied["code"], denied["rule"]) == (False, "source_ip_not_allowed", rule.id)
    late = api.post("/api/policy/check", {**ask, "path": "/admin"}, format="json").json()
    assert (late["allowed"], late["code"], late["rule"]) == (False, "no_matching_rule", None)


def test_the_policy_dry_run_validates_its_question(api, crm, make_user):
    make_user("alice")
    response = api.post("/api/policy/check", {"user": "alice", "upstream": "crm", "method": "GET",
                                              "path": "/a/../b"}, format="json")  # fmt: skip
    assert response.status_code == 400
    assert "path" in response.json()["errors"]


def test_the_policy_dry_run_is_for_admins(client_for, make_user):
    assert client_for(make_user()).post("/api/policy/check", {}, format="json").status_code == 403


@pytest.mark.parametrize(
    ("field", "value"), [("name", 12), ("fail_open", 0), ("internal", "yes"), ("base_url", 8080), ("enabled", 1)]
)
def test_json_bodies_take_the_documented_types_only(api, field, value):
    body = {"name": "crm", "base_url": "http://127.0.0.1:8080", "internal": True, field: value}
    response = api.post("/api/upstreams/", body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"]
    assert not Upstream.objects.exists()


def test_html_forms_still_send_booleans_as_text(api):
    response = api.post("/api/upstreams/", {"name": "crm", "base_url": "http://127.0.0.1:8080", "internal": "true"})
    assert response.status_code == 201, response.json()
    assert Upstream.objects.get().internal is True
