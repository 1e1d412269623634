"""Token scopes and the upstream limit on the management API (issue 12, item 13).

The attack: an administrator's token limited to the upstream ``crm`` but allowed on the
management API read every upstream's events, changed ``hr`` and repointed ``crm``.  Now
its upstream limit also limits what it sees and changes there, each management scope is
asked for separately, and every refusal is a 403 ``token_scope`` that is audited.
"""

import json

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.gateway.models import AccessRule, Upstream
from apps.gateway.scopes import SCOPES

pytestmark = pytest.mark.django_db


def token_client(plaintext: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    return api


# Internal, so that a valid base URL needs no DNS (nothing here is ever contacted).
@pytest.fixture
def crm():
    return Upstream.objects.create(name="crm", base_url="http://crm.internal", internal=True)


@pytest.fixture
def hr():
    return Upstream.objects.create(name="hr", base_url="http://hr.internal", internal=True)


@pytest.fixture
def limited(token_for, admin_user, crm, hr):
    """``limited(scopes)``: a client with a token of the administrator limited to ``crm``."""

    def make(scopes=SCOPES) -> APIClient:
        return token_client(token_for(admin_user, all_upstreams=False, upstreams=[crm], scopes=list(scopes)))

    return make


@pytest.fixture
def trail(make_event, crm, hr):
    """A gateway event on each upstream, and one tied to none (an authentication failure)."""
    return {
        "crm": make_event(event_type="gateway.request", upstream_id=crm.pk, upstream_name="crm", request_id="c"),
        "hr": make_event(event_type="gateway.request", upstream_id=hr.pk, upstream_name="hr", request_id="h"),
        "none": make_event(event_type="auth.failed", upstream_name="", request_id="n", decision="deny"),
    }


def assert_refused_and_audited(response, token_refusals_before: int) -> None:
    assert response.status_code == 403, response.content
    body = response.json()
    assert (body["code"], body["request_id"]) == ("token_scope", response["X-Request-ID"])
    refusals = AuditEvent.objects.filter(event_type="auth.failed", reason="token_scope", status=403)
    assert refusals.count() == token_refusals_before + 1
    event = refusals.latest("id")
    assert (event.request_id, event.actor_username, event.decision) == (response["X-Request-ID"], "root-admin", "deny")
    assert event.token_key_id


def refusals() -> int:
    return AuditEvent.objects.filter(event_type="auth.failed", reason="token_scope").count()


# --- The audit trail ---------------------------------------------------------------------


def test_a_limited_token_lists_only_its_upstreams_events(limited, trail):
    listed = {row["id"] for row in limited(["audit:read"]).get("/api/audit/events/").json()["results"]}
    assert trail["crm"].id in listed
    assert not listed & {trail["hr"].id, trail["none"].id}


def test_a_limited_token_cannot_filter_its_way_to_another_upstream(limited, trail):
    api = limited(["audit:read"])
    for query in ("upstream=hr", "request_id=h", f"actor={trail['hr'].actor_username}&upstream=hr"):
        assert api.get(f"/api/audit/events/?{query}").json()["results"] == [], query


def test_a_limited_token_reads_no_other_upstreams_event_by_id(limited, trail):
    api = limited(["audit:read"])
    assert api.get(f"/api/audit/events/{trail['crm'].id}/").status_code == 200
    for other in ("hr", "none"):
        response = api.get(f"/api/audit/events/{trail[other].id}/")
        assert (response.status_code, response.json()["code"]) == (404, "not_found")


@pytest.mark.parametrize("kind", ["csv", "ndjson"])
def test_a_limited_token_exports_only_its_upstreams_events(limited, trail, kind):
    response = limited(["audit:read"]).get(f"/api/audit/events/export/?format={kind}")
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    if kind == "ndjson":
        ids = {json.loads(line)["id"] for line in body.splitlines()}
    else:
        ids = {int(line.split(",")[0]) for line in body.splitlines()[1:]}
    assert ids == {trail["crm"].id}


def test_a_limited_tokens_statistics_count_only_its_upstreams(limited, trail):
    body = limited(["audit:read"]).get("/api/audit/stats").json()
    assert {row["upstream_name"] for row in body["counts"]} == {"crm"}
    assert sum(row["count"] for row in body["counts"]) == 1


def test_a_limited_token_may_not_verify_the_chain_of_every_upstream(limited, trail):
    before = refusals()
    assert_refused_and_audited(limited(["audit:read"]).get("/api/audit/verify"), before)


def test_an_unlimited_token_still_reads_the_whole_trail(token_for, admin_user, trail):
    api = token_client(token_for(admin_user, scopes=["audit:read"]))
    listed = {row["id"] for row in api.get("/api/audit/events/").json()["results"]}
    assert {event.id for event in trail.values()} <= listed
    assert api.get("/api/audit/verify").status_code == 200


def test_the_audit_trail_needs_the_audit_scope(limited, trail):
    api = limited(["policy:write", "tokens:write"])
    for url in ("/api/audit/events/", f"/api/audit/events/{trail['crm'].id}/", "/api/audit/stats"):
        before = refusals()
        assert_refused_and_audited(api.get(url), before)


# --- Upstreams ----------------------------------------------------------------------------


def test_a_limited_token_lists_only_its_upstreams(limited):
    names = [row["name"] for row in limited(["policy:read"]).get("/api/upstreams/").json()["results"]]
    assert names == ["crm"]


@pytest.mark.parametrize("method", ["get", "patch", "put", "delete"])
def test_a_limited_token_cannot_see_or_change_another_upstream(limited, hr, method):
    before = refusals()
    payload = {"name": "hr", "base_url": "http://evil.example", "description": "mine now"}
    response = getattr(limited(), method)(f"/api/upstreams/{hr.pk}/", payload, format="json")
    assert_refused_and_audited(response, before)
    hr.refresh_from_db()
    assert (hr.base_url, hr.description) == ("http://hr.internal", "")


def test_a_limited_token_cannot_create_an_upstream(limited):
    before = refusals()
    response = limited().post("/api/upstreams/", {"name": "new", "base_url": "http://new.example"}, format="json")
    assert_refused_and_audited(response, before)
    assert not Upstream.objects.filter(name="new").exists()


@pytest.mark.parametrize(
    "change", [{"base_url": "http://hr.internal"}, {"preserve_host": True}], ids=["base_url", "preserve_host"]
)
def test_a_limited_token_cannot_repoint_its_own_upstream(limited, crm, change):
    before = refusals()
    assert_refused_and_audited(limited().patch(f"/api/upstreams/{crm.pk}/", change, format="json"), before)
    crm.refresh_from_db()
    assert (crm.base_url, crm.preserve_host) == ("http://crm.internal", False)


def test_a_limited_token_cannot_lift_the_ssrf_guard_of_its_own_upstream(token_for, admin_user):
    guarded = Upstream.objects.create(name="guarded", base_url="http://guarded.internal", internal=False)
    api = token_client(token_for(admin_user, all_upstreams=False, upstreams=[guarded], scopes=["policy:write"]))
    before = refusals()
    assert_refused_and_audited(api.patch(f"/api/upstreams/{guarded.pk}/", {"internal": True}, format="json"), before)
    guarded.refresh_from_db()
    assert not guarded.internal


def test_a_limited_token_with_the_write_scope_manages_the_rest_of_its_upstream(limited, crm):
    response = limited(["policy:write"]).patch(
        f"/api/upstreams/{crm.pk}/", {"description": "CRM", "base_url": crm.base_url}, format="json"
    )
    assert response.status_code == 200, response.json()
    crm.refresh_from_db()
    assert crm.description == "CRM"


def test_changing_an_upstream_needs_the_write_scope(limited, crm):
    api = limited(["policy:read", "audit:read", "tokens:write"])
    assert api.get(f"/api/upstreams/{crm.pk}/").status_code == 200
    before = refusals()
    assert_refused_and_audited(api.patch(f"/api/upstreams/{crm.pk}/", {"enabled": False}, format="json"), before)
    crm.refresh_from_db()
    assert crm.enabled


def test_an_unlimited_token_with_the_write_scope_may_repoint_an_upstream(token_for, admin_user, crm):
    api = token_client(token_for(admin_user, scopes=["policy:write"]))
    response = api.patch(f"/api/upstreams/{crm.pk}/", {"base_url": "http://crm2.internal"}, format="json")
    assert response.status_code == 200, response.json()


# --- Rules and the policy dry run ---------------------------------------------------------


@pytest.fixture
def rules(crm, hr, admin_user):
    return {name: AccessRule.objects.create(upstream=upstream, user=admin_user) for name, upstream in
            (("crm", crm), ("hr", hr))}  # fmt: skip


def test_a_limited_token_lists_only_its_upstreams_rules(limited, rules):
    listed = [row["id"] for row in limited(["policy:read"]).get("/api/rules/").json()["results"]]
    assert listed == [rules["crm"].pk]


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_a_limited_token_cannot_see_or_change_another_upstreams_rule(limited, rules, method):
    before = refusals()
    response = getattr(limited(), method)(f"/api/rules/{rules['hr'].pk}/", {"path_pattern": "/x"}, format="json")
    assert_refused_and_audited(response, before)
    assert AccessRule.objects.get(pk=rules["hr"].pk).path_pattern == "/"


def test_a_limited_token_cannot_add_a_rule_to_another_upstream_or_move_one_there(limited, rules):
    api = limited()
    before = refusals()
    assert_refused_and_audited(api.post("/api/rules/", {"upstream": "hr", "user": "root-admin"}, format="json"), before)
    assert_refused_and_audited(
        api.patch(f"/api/rules/{rules['crm'].pk}/", {"upstream": "hr"}, format="json"), before + 1
    )
    assert AccessRule.objects.filter(upstream__name="hr").count() == 1
    assert api.post("/api/rules/", {"upstream": "crm", "user": "root-admin"}, format="json").status_code == 201


def test_a_limited_token_asks_the_policy_only_about_its_upstreams(limited, rules):
    api = limited(["policy:read"])
    question = {"user": "root-admin", "method": "GET", "path": "/x"}
    assert api.post("/api/policy/check", {**question, "upstream": "crm"}, format="json").status_code == 200
    before = refusals()
    assert_refused_and_audited(api.post("/api/policy/check", {**question, "upstream": "hr"}, format="json"), before)


# --- What is not a limited token ----------------------------------------------------------


def test_a_person_in_the_browsable_api_keeps_the_users_full_permissions(client, admin_user, crm, hr, trail):
    client.force_login(admin_user)
    assert {row["name"] for row in client.get("/api/upstreams/").json()["results"]} == {"crm", "hr"}
    listed = {row["id"] for row in client.get("/api/audit/events/").json()["results"]}
    assert {event.id for event in trail.values()} <= listed
    assert client.get("/api/audit/verify").status_code == 200
    me = client.get("/api/me/").json()
    assert (me["authentication"], me["scopes"]) == ("SessionAuthentication", None)


def test_scopes_never_widen_the_users_own_permissions(token_for, make_user, crm):
    api = token_client(token_for(make_user(), scopes=list(SCOPES)))
    for url in ("/api/upstreams/", "/api/rules/", "/api/audit/verify"):
        response = api.get(url)
        assert (response.status_code, response.json()["code"]) == (403, "permission_denied"), url
