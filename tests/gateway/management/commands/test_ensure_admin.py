import stat
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.gateway import tokens
from apps.gateway.models import APIToken
from apps.gateway.scopes import SCOPES

pytestmark = pytest.mark.django_db


def run(tmp_path, capsys, **options) -> str:
    call_command(
        "ensure_admin", token_file=tmp_path / "admin-token", password_file=tmp_path / "admin-password", **options
    )
    return capsys.readouterr().out


def token_in(tmp_path) -> APIToken | None:
    return tokens.find_token((tmp_path / "admin-token").read_text().strip())


def test_it_creates_the_admin_with_private_token_and_password_files(tmp_path, capsys):
    output = run(tmp_path, capsys)
    assert output.count("created") == 2
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    token = token_in(tmp_path)
    assert (token.user, token.label, token.all_upstreams, token.scopes) == (
        admin,
        "admin (deploy)",
        True,
        list(SCOPES),
    )
    assert abs(token.expires_at - timezone.now() - timedelta(days=365)) < timedelta(minutes=1)
    assert admin.check_password((tmp_path / "admin-password").read_text().strip())
    for name in ("admin-token", "admin-password"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert AuditEvent.objects.filter(event_type="token.created", object_id=str(token.pk)).count() == 1


def test_the_token_file_works_on_the_management_api(tmp_path, capsys):
    run(tmp_path, capsys)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {(tmp_path / 'admin-token').read_text().strip()}")
    response = api.get("/api/me/")
    assert (response.status_code, response.json()["username"]) == (200, "admin")


def test_a_rerun_changes_nothing(tmp_path, capsys):
    run(tmp_path, capsys)
    key = (tmp_path / "admin-token").read_text()
    password_hash = User.objects.get(username="admin").password
    assert run(tmp_path, capsys).strip() == "unchanged"
    assert (tmp_path / "admin-token").read_text() == key
    assert User.objects.get(username="admin").password == password_hash
    assert APIToken.objects.count() == 1


@pytest.mark.parametrize(
    "content",
    ["stale", "0123456789abcdef0123456789abcdef01234567", tokens.generate().plaintext],
    ids=["garbage", "old DRF authtoken key", "unknown token"],
)
def test_a_token_file_that_does_not_authenticate_is_replaced(tmp_path, capsys, content):
    (tmp_path / "admin-token").write_text(content + "\n")
    output = run(tmp_path, capsys)
    assert f"created token file {tmp_path / 'admin-token'}\n" in output
    assert token_in(tmp_path).user.username == "admin"


def test_a_revoked_token_is_replaced(tmp_path, capsys):
    run(tmp_path, capsys)
    old = token_in(tmp_path)
    tokens.revoke_token(old)
    assert run(tmp_path, capsys).startswith("created token file")
    assert token_in(tmp_path).pk != old.pk


def test_a_token_that_expires_within_30_days_is_renewed(tmp_path, capsys):
    run(tmp_path, capsys)
    old = token_in(tmp_path)
    APIToken.objects.filter(pk=old.pk).update(expires_at=timezone.now() + timedelta(days=29))
    assert run(tmp_path, capsys).strip() == f"created token file {tmp_path / 'admin-token'} (renewed)"
    new = token_in(tmp_path)
    assert new.pk != old.pk and new.expires_at > timezone.now() + timedelta(days=300)
    assert APIToken.objects.get(pk=old.pk).revoked_at is None  # left to expire: other hosts may still hold it


def test_the_deploy_token_may_outlive_the_maximum_lifetime(tmp_path, capsys, settings):
    run(tmp_path, capsys, expires_in_days=400)
    assert token_in(tmp_path).expires_at > timezone.now() + timedelta(days=settings.TOKEN_MAX_LIFETIME_DAYS + 300)
    with pytest.raises(CommandError):
        run(tmp_path, capsys, expires_in_days=30)


def test_creating_the_admin_is_audited_with_the_command_as_the_actor(tmp_path, capsys):
    run(tmp_path, capsys)
    admin = User.objects.get(username="admin")
    created = AuditEvent.objects.get(event_type="user.created")
    assert (created.object_type, created.object_id, created.object_repr) == ("auth.user", str(admin.pk), "admin")
    assert created.changes["is_superuser"] == [None, True] and created.changes["password"] == [None, "********"]
    assert (created.actor_id, created.source_ip, created.auth_method) == (None, None, "command")
    assert created.user_agent == "manage.py ensure_admin" and created.request_id.startswith("cmd-")
    token_created = AuditEvent.objects.get(event_type="token.created")
    assert (token_created.request_id, token_created.auth_method) == (created.request_id, "command")


def test_a_rerun_records_no_event(tmp_path, capsys):
    run(tmp_path, capsys)
    count = AuditEvent.objects.count()
    run(tmp_path, capsys)
    assert AuditEvent.objects.count() == count
