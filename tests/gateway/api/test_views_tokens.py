"""``/api/tokens/``, tokens on the management API, and the tokens admin."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.gateway import tokens
from apps.gateway.authentication import token_cache
from apps.gateway.models import APIToken, Upstream
from apps.gateway.scopes import SCOPES

pytestmark = pytest.mark.django_db

URL = "/api/tokens/"


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


def token_client(plaintext: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {plaintext}")
    return api


def issue(user, **options) -> tuple[APIToken, str]:
    values = {"label": "test", "expires_at": timezone.now() + timedelta(days=30), "scopes": SCOPES}
    return tokens.create_token(user=user, **{**values, **options})


def detail_url(token: APIToken) -> str:
    return f"{URL}{token.pk}/"


# --- Creating ---------------------------------------------------------------------------


def test_create_shows_the_plaintext_once_and_it_works(client_for, alice):
    response = client_for(alice).post(URL, {"label": "laptop"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert response["Cache-Control"] == "no-store"
    parsed = tokens.parse(body["token"])
    assert parsed.key_id == body["key_id"]
    token = APIToken.objects.get(key_id=body["key_id"])
    assert (token.user, token.created_by, token.label) == (alice, alice, "laptop")
    assert (token.all_upstreams, token.scopes, token.allowed_cidrs) == (False, [], [])
    assert "secret_hash" not in body and "pepper_id" not in body
    assert tokens.find_token(body["token"]) == token


def test_the_plaintext_is_never_shown_again(client_for, alice):
    api = client_for(alice)
    created = api.post(URL, {"label": "laptop"}, format="json").json()
    for response in (api.get(URL), api.get(f"{URL}{created['id']}/"), api.post(f"{URL}{created['id']}/revoke/")):
        assert response.status_code == 200
        assert created["token"] not in response.content.decode()
        assert b"secret_hash" not in response.content and b'"token"' not in response.content


def test_the_expiry_defaults_to_the_maximum_lifetime(client_for, alice, settings):
    body = client_for(alice).post(URL, {"label": "x"}, format="json").json()
    expected = timezone.now() + timedelta(days=settings.TOKEN_MAX_LIFETIME_DAYS)
    token = APIToken.objects.get(pk=body["id"])
    assert abs(token.expires_at - expected) < timedelta(minutes=1)


def test_the_expiry_can_be_given_in_days_or_as_a_date(client_for, alice):
    api = client_for(alice)
    in_days = api.post(URL, {"label": "x", "expires_in_days": 7}, format="json").json()
    when = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    as_date = api.post(URL, {"label": "y", "expires_at": when.isoformat()}, format="json").json()
    assert abs(APIToken.objects.get(pk=in_days["id"]).expires_at - timezone.now() - timedelta(days=7)) < timedelta(
        minutes=1
    )
    assert APIToken.objects.get(pk=as_date["id"]).expires_at == when


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"expires_in_days": 91}, "expires_in_days"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 368709033116305}, "expires_in_days"),  # once a 500: the date overflowed
        ({"expires_at": "+91d"}, "expires_at"),
        ({"expires_at": "-1m"}, "expires_at"),
        ({"expires_at": "+1d", "expires_in_days": 1}, "expires_in_days"),
        ({"allowed_cidrs": ["10.0.0.0/33"]}, "allowed_cidrs"),
        ({"allowed_cidrs": "10.0.0.0/8"}, "allowed_cidrs"),
        ({"upstreams": ["nowhere"]}, "upstreams"),
        ({"label": ""}, "label"),
        ({"label": "x" * 101}, "label"),
    ],
)
def test_invalid_requests_get_400_naming_the_field(client_for, alice, settings, payload, field):
    assert settings.TOKEN_MAX_LIFETIME_DAYS == 90
    offsets = {"+91d": timedelta(days=91), "-1m": -timedelta(minutes=1), "+1d": timedelta(days=1)}
    if payload.get("expires_at") in offsets:
        payload = {**payload, "expires_at": (timezone.now() + offsets[payload["expires_at"]]).isoformat()}
    api = client_for(alice)
    existing = APIToken.objects.count()
    response = api.post(URL, {"label": "x", **payload}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], list(body["errors"])) == ("invalid", [field])
    assert body["request_id"] == response["X-Request-ID"]
    assert APIToken.objects.count() == existing


def test_scopes_are_stored_as_given(client_for, alice):
    Upstream.objects.create(name="crm", base_url="http://crm.internal")
    payload = {
        "label": "job",
        "upstreams": ["crm"],
        "management_api": True,
        "allowed_cidrs": ["10.1.2.3/8", "2001:db8::/32"],
    }
    body = client_for(alice).post(URL, payload, format="json").json()
    assert (body["upstreams"], body["all_upstreams"], body["management_api"]) == (["crm"], False, True)
    assert body["allowed_cidrs"] == ["10.0.0.0/8", "2001:db8::/32"]
    assert body["status"] == "active" and body["user"] == "alice"


def test_a_user_cannot_create_a_token_for_someone_else(client_for, alice, bob):
    response = client_for(alice).post(URL, {"label": "x", "user": "bob"}, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["user"]
    assert not bob.api_tokens.exists()


def test_an_admin_may_create_a_token_for_anyone(client_for, admin_user, bob):
    body = client_for(admin_user).post(URL, {"label": "for bob", "user": "bob"}, format="json").json()
    token = APIToken.objects.get(pk=body["id"])
    assert (token.user, token.created_by, body["created_by"]) == (bob, admin_user, "root-admin")


def test_creation_is_audited_without_the_secret(client_for, alice):
    response = client_for(alice).post(URL, {"label": "laptop", "allowed_cidrs": ["10.0.0.0/8"]}, format="json")
    body, request_id = response.json(), response["X-Request-ID"]
    event = AuditEvent.objects.get(event_type="token.created", object_id=str(body["id"]))
    assert (event.object_type, event.actor_username, event.request_id) == ("gateway.apitoken", "alice", request_id)
    assert event.changes["label"] == [None, "laptop"] and event.changes["allowed_cidrs"] == [None, ["10.0.0.0/8"]]
    assert tokens.parse(body["token"]).secret not in str(event.changes) + event.object_repr


def test_creation_and_revocation_record_who_acted_from_where_in_which_request(client_for, alice):
    api = client_for(alice)
    context = {"REMOTE_ADDR": "192.0.2.7", "HTTP_USER_AGENT": "curl/8"}
    created = api.post(URL, {"label": "ci"}, format="json", **context)
    token_id = str(created.json()["id"])
    revoked = api.post(f"{URL}{token_id}/revoke/", **context)
    for response, event_type, path in [
        (created, "token.created", URL),
        (revoked, "token.revoked", f"{URL}{token_id}/revoke/"),
    ]:
        event = AuditEvent.objects.get(event_type=event_type, object_id=token_id)
        assert (event.request_id, event.actor_id, event.actor_username) == (response["X-Request-ID"], alice.pk, "alice")
        assert (event.source_ip, event.user_agent, event.method, event.path) == ("192.0.2.7", "curl/8", "POST", path)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"all_upstreams": True}, "all_upstreams"),
        ({"upstreams": ["hr"]}, "upstreams"),
        ({"allowed_cidrs": []}, "allowed_cidrs"),
        ({"allowed_cidrs": ["10.0.0.0/7"]}, "allowed_cidrs"),
        ({"allowed_cidrs": ["2001:db8::/32"]}, "allowed_cidrs"),
        ({}, None),
    ],
)
def test_a_token_cannot_mint_a_broader_token(alice, payload, field):
    crm = Upstream.objects.create(name="crm", base_url="http://crm.internal")
    Upstream.objects.create(name="hr", base_url="http://hr.internal")
    _, plaintext = issue(alice, upstreams=[crm], allowed_cidrs=["10.0.0.0/8"])
    narrower = {"label": "child", "upstreams": ["crm"], "allowed_cidrs": ["10.1.0.0/16"]}
    response = token_client(plaintext).post(URL, {**narrower, **payload}, format="json", REMOTE_ADDR="10.1.2.3")
    if field is None:
        assert response.status_code == 201
    else:
        assert (response.status_code, list(response.json()["errors"])) == (400, [field])


def test_the_browsable_form_lists_no_other_users(client, alice, bob):
    client.force_login(alice)
    response = client.get(URL, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b">alice<" in response.content and b"bob" not in response.content


def test_tokens_are_never_updated(client_for, alice):
    token, _ = issue(alice)
    api = client_for(alice)
    assert api.patch(detail_url(token), {"label": "new"}, format="json").status_code == 405
    assert api.put(detail_url(token), {"label": "new"}, format="json").status_code == 405


# --- Whose tokens -------------------------------------------------------------------------


def test_users_see_only_their_own_tokens(client_for, alice, bob):
    mine, _ = issue(alice)
    theirs, _ = issue(bob)
    api = client_for(alice)  # also creates alice's client token
    listed = {row["key_id"] for row in api.get(URL).json()["results"]}
    assert mine.key_id in listed and theirs.key_id not in listed
    assert api.get(URL, {"user": "bob"}).json()["results"] == []
    for response in (
        api.get(detail_url(theirs)),
        api.post(f"{detail_url(theirs)}revoke/"),
    ):
        assert response.status_code == 404
    assert APIToken.objects.get(pk=theirs.pk).revoked_at is None


def test_admins_see_and_filter_everyones_tokens(client_for, admin_user, alice, bob):
    issue(alice)
    theirs, _ = issue(bob)
    api = client_for(admin_user)
    assert {row["user"] for row in api.get(URL).json()["results"]} >= {"alice", "bob", "root-admin"}
    assert [row["key_id"] for row in api.get(URL, {"user": "bob"}).json()["results"]] == [theirs.key_id]
    assert api.post(f"{detail_url(theirs)}revoke/").json()["status"] == "revoked"


def test_anonymous_callers_get_401(client):
    response = client.get(URL)
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


# --- Revoking -----------------------------------------------------------------------------


def test_revoke_keeps_the_row_is_idempotent_and_is_audited_once(client_for, alice):
    token, plaintext = issue(alice)
    api = client_for(alice)
    first = api.post(f"{detail_url(token)}revoke/")
    second = api.post(f"{detail_url(token)}revoke/")
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["revoked_at"] == second.json()["revoked_at"] is not None
    event = AuditEvent.objects.get(event_type="token.revoked")
    assert (event.object_id, event.actor_username) == (str(token.pk), "alice")
    token_cache.clear()  # as if POLICY_CACHE_SECONDS had passed
    response = token_client(plaintext).get("/api/me/")
    assert (response.status_code, response.json()["code"]) == (401, "token_revoked")


def test_tokens_are_revoked_never_deleted(client_for, alice):
    token, _ = issue(alice)
    api = client_for(alice)
    assert api.delete(detail_url(token)).status_code == 405
    assert APIToken.objects.get(pk=token.pk).revoked_at is None
    assert api.post(f"{detail_url(token)}revoke/").status_code == 200
    assert api.get(detail_url(token)).json()["status"] == "revoked"  # still readable: the trail refers to it


# --- Tokens on the management API ---------------------------------------------------------


def test_a_token_without_the_management_scope_gets_403_token_scope(alice):
    token, plaintext = issue(alice, scopes=[], all_upstreams=True)
    response = token_client(plaintext).get("/api/me/")
    assert (response.status_code, response.json()["code"]) == (403, "token_scope")
    event = AuditEvent.objects.get(event_type="auth.failed")
    assert (event.reason, event.token_key_id, event.status) == ("token_scope", token.key_id, 403)


def test_an_expired_token_gets_401_token_expired_and_one_audit_event(alice):
    token, plaintext = issue(alice)
    APIToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = token_client(plaintext).get("/api/me/", REMOTE_ADDR="192.0.2.44")
    assert (response.status_code, response.json()["code"]) == (401, "token_expired")
    assert response["WWW-Authenticate"].startswith("Token")
    event = AuditEvent.objects.get(event_type="auth.failed")
    assert (event.reason, event.decision, event.status) == ("token_expired", "deny", 401)
    assert (event.token_key_id, event.source_ip, event.path) == (token.key_id, "192.0.2.44", "/api/me/")
    assert event.request_id == response["X-Request-ID"]


def test_a_token_from_outside_its_networks_gets_403(alice):
    _, plaintext = issue(alice, allowed_cidrs=["10.0.0.0/8"])
    assert token_client(plaintext).get("/api/me/", REMOTE_ADDR="10.0.0.9").status_code == 200
    response = token_client(plaintext).get("/api/me/", REMOTE_ADDR="192.0.2.1")
    assert (response.status_code, response.json()["code"]) == (403, "source_ip_not_allowed")


def test_request_auth_is_the_token(alice):
    token, plaintext = issue(alice)
    response = token_client(plaintext).get("/api/me/")
    request = response.renderer_context["request"]
    assert (request.user, request.auth.pk, response.json()["username"]) == (alice, token.pk, "alice")


# --- Admin --------------------------------------------------------------------------------


@pytest.fixture
def admin_browser(client, admin_user):
    client.force_login(admin_user)
    return client


def test_the_admin_creates_a_token_and_shows_it_once(admin_browser, alice):
    expires = (timezone.now() + timedelta(days=10)).strftime("%Y-%m-%d")
    response = admin_browser.post(
        "/admin/gateway/apitoken/add/",
        {
            "user": alice.pk,
            "label": "from admin",
            "expires_at_0": expires,
            "expires_at_1": "12:00:00",
        },
        follow=True,
    )
    assert response.status_code == 200
    token = APIToken.objects.get(label="from admin")
    shown = [str(message) for message in response.context["messages"] if token.key_id in str(message)]
    [plaintext] = [word for message in shown for word in message.split() if word.startswith("agt_")]
    assert tokens.find_token(plaintext) == token
    assert AuditEvent.objects.filter(event_type="token.created", object_id=str(token.pk)).count() == 1
    page = admin_browser.get(f"/admin/gateway/apitoken/{token.pk}/change/").content.decode()
    assert token.key_id in page and token.secret_hash not in page and plaintext not in page


@pytest.mark.parametrize(
    ("days", "cidrs"), [(120, "[]"), (10, '["nonsense"]'), (10, '"10.0.0.0/8"')], ids=["too long", "bad", "no list"]
)
def test_the_admin_refuses_invalid_tokens(admin_browser, alice, days, cidrs):
    expires = (timezone.now() + timedelta(days=days)).strftime("%Y-%m-%d")
    response = admin_browser.post(
        "/admin/gateway/apitoken/add/",
        {
            "user": alice.pk,
            "label": "refused",
            "expires_at_0": expires,
            "expires_at_1": "12:00:00",
            "allowed_cidrs": cidrs,
        },
    )
    assert response.status_code == 200 and response.context["adminform"].form.errors
    assert not APIToken.objects.filter(label="refused").exists()


def test_the_admin_lists_and_revokes_tokens(admin_browser, alice):
    token, _ = issue(alice)
    page = admin_browser.get("/admin/gateway/apitoken/", {"q": "alice"}).content.decode()
    assert token.key_id in page and token.secret_hash not in page
    admin_browser.post(
        "/admin/gateway/apitoken/", {"action": "revoke_selected", "_selected_action": [token.pk]}, follow=True
    )
    assert APIToken.objects.get(pk=token.pk).revoked_at is not None
    assert AuditEvent.objects.filter(event_type="token.revoked", actor_username="root-admin").count() == 1


# --- Scopes (issue 12, item 13) -----------------------------------------------------------


def test_scopes_are_stored_known_deduplicated_and_in_order(client_for, alice):
    payload = {"label": "job", "scopes": ["tokens:write", "audit:read", "audit:read"]}
    body = client_for(alice).post(URL, payload, format="json").json()
    assert (body["scopes"], body["management_api"]) == (["audit:read", "tokens:write"], True)
    assert APIToken.objects.get(pk=body["id"]).scopes == ["audit:read", "tokens:write"]


@pytest.mark.parametrize("scopes", [["admin"], "audit:read", [1], [True], [["audit:read"]], {"audit:read": 1}])
def test_unknown_or_malformed_scopes_get_400_naming_the_field(client_for, alice, scopes):
    response = client_for(alice).post(URL, {"label": "x", "scopes": scopes}, format="json")
    assert (response.status_code, list(response.json()["errors"])) == (400, ["scopes"])


def test_management_api_true_is_the_former_flag_every_scope(client_for, alice):
    body = client_for(alice).post(URL, {"label": "old client", "management_api": True}, format="json").json()
    assert body["scopes"] == list(SCOPES)
    twice = client_for(alice).post(URL, {"label": "x", "management_api": True, "scopes": []}, format="json")
    assert (twice.status_code, list(twice.json()["errors"])) == (400, ["management_api"])


def test_tokens_can_be_filtered_by_scope(client_for, admin_user, alice):
    reader, _ = issue(alice, scopes=["audit:read"])
    gateway_only, _ = issue(alice, scopes=[])
    api = client_for(admin_user)
    by_scope = {row["key_id"] for row in api.get(URL, {"user": "alice", "scope": "audit:read"}).json()["results"]}
    assert by_scope == {reader.key_id}
    without = {row["key_id"] for row in api.get(URL, {"user": "alice", "management_api": "false"}).json()["results"]}
    assert without == {gateway_only.key_id}
    with_any = {row["key_id"] for row in api.get(URL, {"user": "alice", "management_api": "true"}).json()["results"]}
    assert with_any == {reader.key_id}


def test_listing_tokens_needs_tokens_read_and_making_them_tokens_write(alice):
    _, reader = issue(alice, scopes=["tokens:read"])
    assert token_client(reader).get(URL).status_code == 200
    response = token_client(reader).post(URL, {"label": "child"}, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "token_scope")
    _, auditor = issue(alice, scopes=["audit:read"])
    response = token_client(auditor).get(URL)
    assert (response.status_code, response.json()["code"]) == (403, "token_scope")
    assert not APIToken.objects.filter(label="child").exists()


def test_a_token_without_tokens_write_cannot_revoke(alice):
    target, _ = issue(alice)
    _, reader = issue(alice, scopes=["tokens:read", "audit:read"])
    response = token_client(reader).post(f"{detail_url(target)}revoke/")
    assert (response.status_code, response.json()["code"]) == (403, "token_scope")
    assert APIToken.objects.get(pk=target.pk).revoked_at is None


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        (["tokens:write"], True),
        (["tokens:read"], True),  # included in tokens:write
        (["audit:read"], False),
        (["policy:read"], False),
        (["tokens:write", "policy:write"], False),
    ],
)
def test_a_token_cannot_mint_a_token_with_scopes_it_lacks(alice, scopes, allowed):
    _, parent = issue(alice, scopes=["tokens:write"])
    response = token_client(parent).post(URL, {"label": "child", "scopes": scopes}, format="json")
    if allowed:
        assert (response.status_code, response.json()["scopes"]) == (201, scopes)
    else:
        assert (response.status_code, list(response.json()["errors"])) == (400, ["scopes"])


def test_a_token_cannot_mint_the_former_flag_when_it_lacks_a_scope(alice):
    _, parent = issue(alice, scopes=["tokens:write", "audit:read"])
    response = token_client(parent).post(URL, {"label": "child", "management_api": True}, format="json")
    assert (response.status_code, list(response.json()["errors"])) == (400, ["scopes"])


def test_a_token_cannot_mint_one_that_outlives_it(alice):
    parent, plaintext = issue(alice, scopes=["tokens:write"], expires_at=timezone.now() + timedelta(days=5))
    later = token_client(plaintext).post(URL, {"label": "child", "expires_in_days": 30}, format="json")
    assert (later.status_code, list(later.json()["errors"])) == (400, ["expires_at"])
    default = token_client(plaintext).post(URL, {"label": "child"}, format="json")
    assert default.status_code == 201
    assert APIToken.objects.get(pk=default.json()["id"]).expires_at == parent.expires_at


def test_a_limited_token_of_an_admin_sees_and_makes_only_its_users_tokens(admin_user, bob):
    crm = Upstream.objects.create(name="crm", base_url="http://crm.internal")
    theirs, _ = issue(bob)
    _, plaintext = issue(admin_user, scopes=["tokens:write"], upstreams=[crm])
    api = token_client(plaintext)
    assert {row["user"] for row in api.get(URL).json()["results"]} == {"root-admin"}
    assert api.get(detail_url(theirs)).status_code == 404
    assert api.post(f"{detail_url(theirs)}revoke/").status_code == 404
    response = api.post(URL, {"label": "for bob", "user": "bob", "upstreams": ["crm"]}, format="json")
    assert (response.status_code, list(response.json()["errors"])) == (400, ["user"])
    assert not bob.api_tokens.filter(label="for bob").exists()


def test_the_admin_gives_a_token_the_scopes_ticked_and_no_others(admin_browser, alice):
    expires = (timezone.now() + timedelta(days=10)).strftime("%Y-%m-%d")
    form = {"user": alice.pk, "label": "ticked", "expires_at_0": expires, "expires_at_1": "12:00:00"}
    # follow: the pages shown after each creation take its message (the plaintext) with them.
    admin_browser.post("/admin/gateway/apitoken/add/", {**form, "scopes": ["tokens:read", "audit:read"]}, follow=True)
    admin_browser.post("/admin/gateway/apitoken/add/", {**form, "label": "none ticked"}, follow=True)
    assert APIToken.objects.get(label="ticked").scopes == ["audit:read", "tokens:read"]
    assert APIToken.objects.get(label="none ticked").scopes == []
    listed = admin_browser.get("/admin/gateway/apitoken/", {"scope": "audit:read"}).content.decode()
    assert APIToken.objects.get(label="ticked").key_id in listed
    assert APIToken.objects.get(label="none ticked").key_id not in listed
