import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from auditgate.env import Env, audit_seal_keys, token_peppers


def make_env(tmp_path, text: str, environ=None) -> Env:
    path = tmp_path / "auditgate.env"
    path.write_text(text)
    return Env([path], environ or {})


def test_environment_variables_override_the_file(tmp_path):
    env = make_env(tmp_path, "A=from-file\nB=kept\n", {"A": "from-env"})
    assert env.str("A") == "from-env"
    assert env.str("B") == "kept"


def test_it_ignores_comments_and_blank_lines(tmp_path):
    env = make_env(tmp_path, "# comment\n\nA = 1 \n")
    assert env.int("A") == 1


def test_a_missing_value_without_default_is_a_configuration_error(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="MISSING"):
        make_env(tmp_path, "").str("MISSING")


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("On", True), ("0", False), ("no", False)])
def test_it_parses_booleans(tmp_path, raw, value):
    assert make_env(tmp_path, f"FLAG={raw}").bool("FLAG") is value


@pytest.mark.parametrize(("method", "raw"), [("bool", "maybe"), ("int", "ten")])
def test_malformed_values_are_configuration_errors(tmp_path, method, raw):
    with pytest.raises(ImproperlyConfigured, match="X"):
        getattr(make_env(tmp_path, f"X={raw}"), method)("X")


def test_a_malformed_line_names_the_file_and_line(tmp_path):
    with pytest.raises(ImproperlyConfigured, match=r"auditgate.env:2"):
        make_env(tmp_path, "A=1\nnot a pair\n")


def test_lists_are_comma_separated(tmp_path):
    assert make_env(tmp_path, "H=a.example, b.example,").list("H") == ["a.example", "b.example"]


def test_secrets_can_come_from_a_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret\n")
    env = make_env(tmp_path, f"KEY_FILE={secret_file}")
    assert env.secret("KEY") == "s3cret"


def test_an_empty_secret_is_refused(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="KEY"):
        make_env(tmp_path, "KEY=").secret("KEY")


# --- token peppers -----------------------------------------------------------------------

PEPPER, NEWER_PEPPER = "pepper-0123456789abcdef", "newer-pepper-0123456789"


def test_token_peppers_are_read_with_the_id_new_tokens_use():
    environ = {"AUDITGATE_TOKEN_PEPPERS": f"1:{PEPPER},2:{NEWER_PEPPER}"}
    assert token_peppers(Env([], environ)) == ({1: PEPPER.encode(), 2: NEWER_PEPPER.encode()}, 2)
    assert token_peppers(Env([], {**environ, "AUDITGATE_TOKEN_PEPPER_ID": "1"}))[1] == 1


def test_a_pepper_id_outside_the_peppers_is_refused_without_their_secrets():
    environ = {"AUDITGATE_TOKEN_PEPPERS": f"1:{PEPPER}", "AUDITGATE_TOKEN_PEPPER_ID": "2"}
    with pytest.raises(ImproperlyConfigured, match="names no pepper") as refused:
        token_peppers(Env([], environ))
    assert PEPPER not in str(refused.value)


# --- the audit seal key ring ------------------------------------------------------------

FIRST, SECOND = "first-seal-key-0123456789", "second-seal-key-0123456789"


def seal_keys(environ: dict[str, str]) -> tuple[dict[str, str], str]:
    return audit_seal_keys(Env([], environ))


def test_the_seal_key_ring_is_read_with_its_current_id():
    ring = f"1:{FIRST},2:{SECOND}"
    assert seal_keys({"AUDITGATE_AUDIT_SEAL_KEYS": ring, "AUDITGATE_AUDIT_SEAL_KEY_ID": "1"}) == (
        {"1": FIRST, "2": SECOND}, "1"
    )  # fmt: skip
    assert seal_keys({"AUDITGATE_AUDIT_SEAL_KEYS": ring})[1] == "2"  # the newest by default, as peppers


def test_the_single_seal_key_of_a_host_deployed_before_rotation_is_a_ring_of_one():
    assert seal_keys({"AUDITGATE_AUDIT_SEAL_KEY": FIRST}) == ({"1": FIRST}, "1")
    legacy = {"AUDITGATE_AUDIT_SEAL_KEY": "short", "AUDITGATE_AUDIT_SEAL_KEY_ID": "k7"}  # as accepted before
    assert seal_keys(legacy) == ({"k7": "short"}, "k7")


def test_no_seal_key_means_unsigned_checkpoints():
    assert seal_keys({}) == ({}, "")
    assert seal_keys({"AUDITGATE_AUDIT_SEAL_KEY": "", "AUDITGATE_AUDIT_SEAL_KEYS": ""}) == ({}, "")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"AUDITGATE_AUDIT_SEAL_KEYS": f"1:{FIRST}", "AUDITGATE_AUDIT_SEAL_KEY_ID": "2"}, "names no key"),
        ({"AUDITGATE_AUDIT_SEAL_KEYS": f"1:{FIRST}", "AUDITGATE_AUDIT_SEAL_KEY": SECOND}, "not both"),
        ({"AUDITGATE_AUDIT_SEAL_KEYS": f"one:{FIRST}"}, "expected 'id:secret' pairs"),
        ({"AUDITGATE_AUDIT_SEAL_KEYS": f"1:{FIRST},2:too-short"}, "expected 'id:secret' pairs"),
    ],
)
def test_a_seal_key_ring_that_cannot_sign_is_refused_without_its_secrets(environ, message):
    with pytest.raises(ImproperlyConfigured, match=message) as refused:
        seal_keys(environ)
    assert FIRST not in str(refused.value) and SECOND not in str(refused.value)


def import_settings(environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter with only ``environ``, as a daemon starts."""
    return subprocess.run(
        [sys.executable, "-c", "import auditgate.settings"],
        cwd=settings.SITE_DIR, env=environ, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_a_current_seal_key_id_outside_the_ring_stops_the_settings_at_start_up():
    environ = {
        "PATH": os.environ.get("PATH", ""), "AUDITGATE_ENV_FILE": "", "AUDITGATE_DEV": "true",
        "AUDITGATE_AUDIT_SEAL_KEYS": f"1:{FIRST}", "AUDITGATE_AUDIT_SEAL_KEY_ID": "2",
    }  # fmt: skip
    started = import_settings(environ)
    assert started.returncode != 0
    assert "ImproperlyConfigured: AUDITGATE_AUDIT_SEAL_KEY_ID names no key" in started.stderr
    assert FIRST not in started.stderr


# --- the read replica ----------------------------------------------------------------------

DEFAULT_DATABASE = {
    "ENGINE": "apps.core.mariadb", "NAME": "auditgate", "USER": "app", "PASSWORD": "pw", "HOST": "db1",
    "PORT": "3306", "OPTIONS": {"charset": "utf8mb4"}, "TEST": {"CHARSET": "utf8mb4"},
}  # fmt: skip


def test_without_a_replica_host_there_is_no_replica_alias(tmp_path):
    from auditgate.env import replica_database

    assert replica_database(make_env(tmp_path, "AUDITGATE_DB_REPLICA_HOST=\n"), DEFAULT_DATABASE) is None
    assert replica_database(make_env(tmp_path, ""), DEFAULT_DATABASE) is None


def test_the_replica_alias_is_the_default_one_on_the_replica_host_with_a_short_connect_timeout(tmp_path):
    from auditgate.env import replica_database

    replica = replica_database(make_env(tmp_path, "AUDITGATE_DB_REPLICA_HOST=db2\n"), DEFAULT_DATABASE)
    assert replica == {
        **DEFAULT_DATABASE, "HOST": "db2", "PORT": "3306", "TEST": {"MIRROR": "default"},
        "OPTIONS": {"charset": "utf8mb4", "connect_timeout": 2},
    }  # fmt: skip
    assert DEFAULT_DATABASE["OPTIONS"] == {"charset": "utf8mb4"}  # a copy: the primary's options are untouched
    env = make_env(tmp_path, "AUDITGATE_DB_REPLICA_HOST=db2\nAUDITGATE_DB_REPLICA_PORT=3307\n")
    assert replica_database(env, DEFAULT_DATABASE)["PORT"] == "3307"


# --- the secrets key ring ------------------------------------------------------------------

FERNET_1 = "ZGV2LW9ubHktc2VjcmV0cy1rZXktbmV2ZXItdXNlISE="
FERNET_2 = "dGVzdC1vbmx5LXNlY3JldHMta2V5LW5ldmVyLXVzZSE="


def secrets_ring(environ: dict[str, str]):
    from auditgate.env import secrets_keys

    return secrets_keys(Env([], environ))


def test_the_secrets_key_ring_is_keyed_by_id_and_the_highest_id_is_current():
    keys = {1: FERNET_1.encode(), 2: FERNET_2.encode()}
    assert secrets_ring({"AUDITGATE_SECRETS_KEYS": f"2:{FERNET_2},1:{FERNET_1}"}) == (keys, 2)
    chosen = {"AUDITGATE_SECRETS_KEYS": f"2:{FERNET_2},1:{FERNET_1}", "AUDITGATE_SECRETS_KEY_ID": "1"}
    assert secrets_ring(chosen) == (keys, 1)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "Set the AUDITGATE_SECRETS_KEYS"),
        ({"AUDITGATE_SECRETS_KEYS": f"1:{FERNET_1}", "AUDITGATE_SECRETS_KEY_ID": "2"}, "names no key"),
        ({"AUDITGATE_SECRETS_KEYS": f"1:{FERNET_1},2:not-a-fernet-key-at-all"}, "key 2 is not a Fernet key"),
        ({"AUDITGATE_SECRETS_KEYS": FERNET_1}, "expected 'id:secret' pairs"),
    ],
)
def test_a_secrets_key_ring_that_cannot_decrypt_stops_start_up_without_its_keys(environ, message):
    with pytest.raises(ImproperlyConfigured, match=message) as refused:
        secrets_ring(environ)
    assert FERNET_1 not in str(refused.value)


def test_outside_development_the_settings_need_a_secrets_key_ring():
    environ = {
        "PATH": os.environ.get("PATH", ""), "AUDITGATE_ENV_FILE": "", "AUDITGATE_SECRET_KEY": "x" * 50,
        "AUDITGATE_ALLOWED_HOSTS": "gate.example", "AUDITGATE_DB_PASSWORD": "pw",
        "AUDITGATE_TOKEN_PEPPERS": "1:a-pepper-of-16-chars",
    }  # fmt: skip
    started = import_settings(environ)
    assert started.returncode != 0
    assert "ImproperlyConfigured: Set the AUDITGATE_SECRETS_KEYS environment variable." in started.stderr
