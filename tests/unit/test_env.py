import pytest
from django.core.exceptions import ImproperlyConfigured

from auditgate.env import Env


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
