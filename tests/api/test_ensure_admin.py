import stat

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db


def run(tmp_path, capsys) -> str:
    call_command("ensure_admin", token_file=tmp_path / "admin-token", password_file=tmp_path / "admin-password")
    return capsys.readouterr().out


def test_it_creates_the_admin_with_private_token_and_password_files(tmp_path, capsys):
    output = run(tmp_path, capsys)
    assert output.count("created") == 2
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    key = (tmp_path / "admin-token").read_text().strip()
    assert Token.objects.get(key=key).user == admin
    assert admin.check_password((tmp_path / "admin-password").read_text().strip())
    for name in ("admin-token", "admin-password"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_a_rerun_changes_nothing(tmp_path, capsys):
    run(tmp_path, capsys)
    key = (tmp_path / "admin-token").read_text()
    password_hash = User.objects.get(username="admin").password
    assert run(tmp_path, capsys).strip() == "unchanged"
    assert (tmp_path / "admin-token").read_text() == key
    assert User.objects.get(username="admin").password == password_hash


def test_a_stale_token_file_is_replaced(tmp_path, capsys):
    (tmp_path / "admin-token").write_text("stale\n")
    run(tmp_path, capsys)
    key = (tmp_path / "admin-token").read_text().strip()
    assert Token.objects.filter(key=key).exists()
