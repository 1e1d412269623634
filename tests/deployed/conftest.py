"""Fixtures for the tests against the deployed system (``make deploy`` on this host).

They talk HTTPS to the real Apache + mod_wsgi + MariaDB, with the admin token the
playbook wrote.  Nothing is faked; without a deployment they fail, they never skip.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

BASE_URL = os.environ.get("AUDITGATE_TEST_URL", "https://localhost")
CA_FILE = os.environ.get("AUDITGATE_TEST_CA", "/etc/auditgate/tls/auditgate.crt")
ADMIN_TOKEN_FILE = Path(os.environ.get("AUDITGATE_TEST_ADMIN_TOKEN_FILE", "/etc/auditgate/admin-token"))
DEFINES_FILE = Path("/etc/apache2/conf-available/auditgate-defines.conf")
ACCESS_LOG = Path("/var/log/apache2/auditgate_access.log")


def apache_defines() -> dict[str, str]:
    """The ``Define NAME value`` lines the playbook wrote for the vhost."""
    return dict(re.findall(r"^Define\s+(\S+)\s+(.*?)\s*$", DEFINES_FILE.read_text(), re.MULTILINE))


@pytest.fixture(scope="session")
def admin_token() -> str:
    if not ADMIN_TOKEN_FILE.is_file():
        pytest.fail(f"{ADMIN_TOKEN_FILE} is missing: run `make deploy` first (make test does).")
    return ADMIN_TOKEN_FILE.read_text().strip()


def https_session() -> requests.Session:
    """An HTTPS session that verifies the deployment's own certificate.

    ``trust_env`` is off: otherwise REQUESTS_CA_BUNDLE in the environment silently
    replaces ``verify``, and proxy variables could route loopback traffic elsewhere.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = CA_FILE
    return session


@pytest.fixture(scope="session")
def http() -> Iterator[requests.Session]:
    with https_session() as session:
        yield session


@pytest.fixture(scope="session")
def admin(admin_token) -> Iterator[requests.Session]:
    with https_session() as session:
        session.headers["Authorization"] = f"Token {admin_token}"
        yield session


@pytest.fixture
def registered_upstream(admin, upstream_server) -> Iterator[str]:
    """An upstream pointing at the test's echo server, with a rule that lets the admin
    GET under ``/allowed``; removed again afterwards (its audit events stay)."""
    name = f"t-{secrets.token_hex(4)}"
    created = admin.post(f"{BASE_URL}/api/upstreams/", json={"name": name, "base_url": upstream_server.url})
    assert created.status_code == 201, created.text
    rule = admin.post(
        f"{BASE_URL}/api/rules/",
        json={"upstream": name, "user": "admin", "methods": ["GET"], "path_prefix": "/allowed"},
    )
    assert rule.status_code == 201, rule.text
    yield name
    assert admin.delete(created.json()["url"]).status_code == 204
