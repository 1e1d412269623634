"""Upstream secrets are encrypted at rest on the deployed host: a dump of the database holds none of
them in plain text, and the gateway still injects them (README, "Secrets at rest")."""

from __future__ import annotations

import secrets
import subprocess

import pytest

from tests.deployed.conftest import BASE_URL

pytestmark = pytest.mark.deployed


def mariadb(*args: str) -> bytes:
    """As root over the unix socket, like an operator (or a thief with the dump)."""
    return subprocess.run(["mariadb", *args], capture_output=True, check=True, timeout=120).stdout


def test_a_database_dump_holds_no_upstream_secret_in_plain_text(admin, register_upstream, upstream_server):
    credential = f"credential-{secrets.token_hex(16)}"
    identity_key = f"identity-{secrets.token_hex(16)}"
    name = register_upstream("/", credential_header="X-Api-Key", credential_value=credential,
                             identity_key=identity_key)  # fmt: skip
    response = admin.get(f"{BASE_URL}/gw/{name}/echo", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["headers"]["x-api-key"] == credential  # decrypted for the upstream only

    dump = subprocess.run(["mariadb-dump", "--single-transaction", "auditgate"], capture_output=True, check=True,
                          timeout=300).stdout  # fmt: skip
    assert credential.encode() not in dump
    assert identity_key.encode() not in dump
    stored = mariadb("-N", "-B", "auditgate", "-e",
                     f"SELECT credential_value, identity_key FROM gateway_upstream WHERE name = '{name}'")  # fmt: skip
    assert [value.startswith(b"gAAAAA") for value in stored.split()] == [True, True]  # Fernet tokens
    # The API never shows them either.
    listed = admin.get(f"{BASE_URL}/api/upstreams/", params={"search": name}, timeout=10).text
    assert credential not in listed and identity_key not in listed
