"""The Django admin of upstreams, rules, tokens and users (``apps.gateway.admin``): every page renders,
secrets are never shown, changes are audited."""

import pytest

from apps.audit.models import AuditEvent
from apps.gateway.models import AccessRule, APIToken, Upstream

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def upstream():
    return Upstream.objects.create(
        name="crm", base_url="http://127.0.0.1:1", internal=True, credential_header="X-Api-Key",
        credential_value="admin-page-secret", identity_key="admin-page-identity",
    )  # fmt: skip


def test_upstream_pages_never_show_its_secrets(browser, upstream):
    for url in ("/admin/gateway/upstream/", f"/admin/gateway/upstream/{upstream.pk}/change/"):
        response = browser.get(url)
        assert response.status_code == 200, url
        assert b"admin-page-secret" not in response.content
        assert b"admin-page-identity" not in response.content


def test_saving_an_upstream_in_the_admin_keeps_secrets_left_empty_and_is_audited(browser, upstream):
    form = {
        "name": "crm", "base_url": "http://127.0.0.1:1", "enabled": "on", "internal": "on", "connect_timeout": "5",
        "read_timeout": "10", "total_timeout": "120", "max_request_bytes": "1000", "max_response_bytes": "1000",
        "websocket_idle_timeout": "300", "websocket_max_duration": "3600", "evidence_max_bytes": "65536",
        "allowed_methods": '["GET"]', "credential_header": "X-Api-Key", "credential_value": "", "identity_key": "",
    }  # fmt: skip
    response = browser.post(f"/admin/gateway/upstream/{upstream.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    upstream.refresh_from_db()
    assert (upstream.read_timeout, upstream.credential_value) == (10.0, "admin-page-secret")
    event = AuditEvent.objects.get(event_type="upstream.updated")
    assert event.changes["read_timeout"] == [30.0, 10.0]
    assert "credential_value" not in event.changes


def test_the_admin_refuses_an_external_upstream_on_loopback(browser):
    form = {"name": "probe", "base_url": "http://127.0.0.1:1", "connect_timeout": "5", "read_timeout": "10",
            "max_request_bytes": "1000", "max_response_bytes": "1000", "allowed_methods": '["GET"]'}  # fmt: skip
    response = browser.post("/admin/gateway/upstream/add/", form)
    assert response.status_code == 200  # the form again, with the error
    assert b"internal" in response.content
    assert not Upstream.objects.exists()


def test_rule_token_and_audit_pages_render(browser, upstream, admin_user, token_for, make_event):
    rule = AccessRule.objects.create(upstream=upstream, subject="any", methods=["GET"])
    token_for(admin_user)
    token = APIToken.objects.get()
    event = make_event()
    for url in (
        "/admin/gateway/accessrule/", f"/admin/gateway/accessrule/{rule.pk}/change/",
        "/admin/gateway/apitoken/", f"/admin/gateway/apitoken/{token.pk}/change/",
        "/admin/audit/auditevent/", f"/admin/audit/auditevent/{event.pk}/change/",
    ):  # fmt: skip
        response = browser.get(url)
        assert response.status_code == 200, url
        assert token.secret_hash.encode() not in response.content


def test_user_changes_in_the_admin_are_audited_without_the_password_hash(browser):
    from django.contrib.auth.models import User

    password = "a-Long-passw0rd!x"
    form = {"username": "carol", "password1": password, "password2": password, "usable_password": "true"}
    response = browser.post("/admin/auth/user/add/", form)
    assert response.status_code == 302, response.content[:1500]
    carol = User.objects.get(username="carol")
    created = AuditEvent.objects.get(event_type="user.created")
    assert created.object_id == str(carol.pk)
    assert created.changes["password"] == [None, "********"]
    assert carol.password not in str(created.changes)
    browser.post(f"/admin/auth/user/{carol.pk}/delete/", {"post": "yes"})
    assert AuditEvent.objects.filter(event_type="user.deleted", object_id=str(carol.pk)).exists()


def test_group_membership_changes_in_the_admin_are_audited(browser, make_user):
    from django.contrib.auth.models import Group

    dave = make_user("dave")
    ops = Group.objects.create(name="ops")
    joined = {"date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    form = {"username": "dave", "is_active": "on", "groups": [ops.pk], **joined}
    response = browser.post(f"/admin/auth/user/{dave.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    change = AuditEvent.objects.filter(event_type="user.updated", changes__has_key="groups").get()
    assert change.changes == {"groups": [[], ["ops"]]}
