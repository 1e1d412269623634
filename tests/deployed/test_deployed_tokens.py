"""Tokens on the deployed system: a revocation reaches every daemon process within the bound."""

from __future__ import annotations

import time

import pytest

from tests.deployed.conftest import BASE_URL, https_session

pytestmark = pytest.mark.deployed

CACHE_BOUND_SECONDS = 1.0  # settings.POLICY_CACHE_SECONDS


def test_a_revoked_token_stops_working_everywhere_within_a_second(admin, registered_upstream):
    created = admin.post(
        f"{BASE_URL}/api/tokens/", json={"label": "revocation test", "upstreams": [registered_upstream]}
    )
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    with https_session() as caller:
        caller.headers["Authorization"] = f"Bearer {token}"
        # Several requests, so that both gateway daemon processes cache the token.
        for _ in range(8):
            assert caller.get(f"{BASE_URL}/gw/{registered_upstream}/allowed/x", timeout=10).status_code == 200
        revoked = admin.post(f"{created.json()['url']}revoke/")
        assert revoked.status_code in (200, 204), revoked.text
        time.sleep(CACHE_BOUND_SECONDS + 0.1)
        for _ in range(8):
            response = caller.get(f"{BASE_URL}/gw/{registered_upstream}/allowed/x", timeout=10)
            assert (response.status_code, response.json()["code"]) == (401, "token_revoked")
        # A token without the management scope cannot use the API.
        assert caller.get(f"{BASE_URL}/api/me/", timeout=10).status_code == 401


def test_a_token_limited_to_one_upstream_cannot_reach_another(admin, register_upstream):
    allowed, other = register_upstream(), register_upstream()
    token = admin.post(f"{BASE_URL}/api/tokens/", json={"label": "scoped", "upstreams": [allowed]}).json()["token"]
    with https_session() as caller:
        caller.headers["Authorization"] = f"Token {token}"
        assert caller.get(f"{BASE_URL}/gw/{allowed}/allowed/x", timeout=10).status_code == 200
        response = caller.get(f"{BASE_URL}/gw/{other}/allowed/x", timeout=10)
        assert (response.status_code, response.json()["code"]) == (403, "token_scope")
        me = caller.get(f"{BASE_URL}/api/me/", timeout=10)
        assert (me.status_code, me.json()["code"]) == (403, "token_scope")
