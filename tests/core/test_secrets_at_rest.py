"""Secrets encrypted at rest (apps.core.secrets_at_rest), on the upstreams' credential and
identity key: what the column holds, what the model gives, a key missing, rekey, the migration."""

from __future__ import annotations

import importlib

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from apps.core.secrets_at_rest import UnreadableSecret, decrypt, is_set, unreadable_fields
from apps.gateway.models import Upstream

pytestmark = pytest.mark.django_db

NEW_KEY = Fernet.generate_key()


def stored(upstream: Upstream, column: str) -> str:
    """The column as MariaDB holds it, bypassing the field."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM gateway_upstream WHERE id = %s", [upstream.pk])
        return cursor.fetchone()[0]


def make(**secrets) -> Upstream:
    return Upstream.objects.create(name="crm", base_url="http://127.0.0.1:1", internal=True, **secrets)


def ring_of(settings, keys: dict[int, bytes], current: int) -> None:
    settings.SECRETS_KEYS, settings.SECRETS_KEY_ID = keys, current


def test_the_column_holds_a_fernet_token_and_never_the_plain_text(settings):
    upstream = make(credential_header="X-Api-Key", credential_value="the-plain-credential", identity_key="k" * 32)
    for column, plain in (("credential_value", "the-plain-credential"), ("identity_key", "k" * 32)):
        token = stored(upstream, column)
        assert plain not in token and token.startswith("gAAAAA")
        current = Fernet(settings.SECRETS_KEYS[settings.SECRETS_KEY_ID])
        assert current.decrypt(token.encode()).decode() == plain


def test_the_model_gives_the_plain_text():
    make(credential_header="X-Api-Key", credential_value="the-plain-credential", identity_key="k" * 32)
    upstream = Upstream.objects.get(name="crm")
    assert (upstream.credential_value, upstream.identity_key) == ("the-plain-credential", "k" * 32)
    assert list(Upstream.objects.values_list("credential_value", flat=True)) == ["the-plain-credential"]


def test_no_secret_stays_empty_and_needs_no_key(settings):
    upstream = make()
    assert (stored(upstream, "credential_value"), stored(upstream, "identity_key")) == ("", "")
    ring_of(settings, {9: NEW_KEY}, 9)
    assert Upstream.objects.get().credential_value == ""
    assert unreadable_fields(Upstream.objects.get()) == []


def test_a_secret_under_a_key_the_ring_lacks_reads_as_unreadable_and_is_kept_when_saved(settings):
    upstream = make(credential_header="X-Api-Key", credential_value="the-plain-credential")
    token = stored(upstream, "credential_value")
    ring_of(settings, {9: NEW_KEY}, 9)
    loaded = Upstream.objects.get()
    assert isinstance(loaded.credential_value, UnreadableSecret) and loaded.credential_value == ""
    assert is_set(loaded.credential_value) and unreadable_fields(loaded) == ["credential_value"]
    loaded.description = "changed meanwhile"
    loaded.save()
    assert stored(upstream, "credential_value") == token
    with pytest.raises(InvalidToken):
        decrypt(token)


def test_rekey_re_encrypts_under_the_new_current_key_so_the_old_key_can_go(settings):
    upstream = make(credential_header="X-Api-Key", credential_value="the-plain-credential", identity_key="k" * 32)
    make_second = Upstream.objects.create(name="erp", base_url="http://127.0.0.1:1", internal=True)
    ring_of(settings, {**settings.SECRETS_KEYS, 9: NEW_KEY}, 9)
    out = run_rekey()
    assert "2 secrets re-encrypted, 0 already under the current key." in out
    assert "0 secrets re-encrypted, 2 already under the current key." in run_rekey()  # idempotent
    ring_of(settings, {9: NEW_KEY}, 9)
    loaded = Upstream.objects.get(pk=upstream.pk)
    assert (loaded.credential_value, loaded.identity_key) == ("the-plain-credential", "k" * 32)
    assert Fernet(NEW_KEY).decrypt(stored(upstream, "identity_key").encode()) == b"k" * 32
    assert stored(make_second, "credential_value") == ""


def test_rekey_names_the_secrets_no_key_decrypts_and_leaves_them(settings):
    upstream = make(credential_header="X-Api-Key", credential_value="the-plain-credential")
    token = stored(upstream, "credential_value")
    ring_of(settings, {9: NEW_KEY}, 9)
    with pytest.raises(CommandError, match=rf"1 secrets no key .* gateway_upstream {upstream.pk} credential_value"):
        run_rekey()
    assert stored(upstream, "credential_value") == token


def run_rekey() -> str:
    from io import StringIO

    out = StringIO()
    call_command("rekey", stdout=out)
    return out.getvalue()


def test_the_migration_encrypts_the_plain_text_stored_before_it_and_decrypts_it_backwards():
    upstream = make(identity_key="placeholder")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE gateway_upstream SET credential_value = %s, identity_key = %s WHERE id = %s",
            ["plain-before-0005", "", upstream.pk],
        )
    migration = importlib.import_module("apps.gateway.migrations.0005_upstream_secrets_encrypted")
    before = MigrationLoader(connection).project_state(("gateway", "0004_upstream_websocket")).apps
    migration.encrypt_secrets(before, None)
    assert stored(upstream, "credential_value").startswith("gAAAAA")
    assert stored(upstream, "identity_key") == ""
    assert Upstream.objects.get().credential_value == "plain-before-0005"
    migration.decrypt_secrets(before, None)
    assert stored(upstream, "credential_value") == "plain-before-0005"
