"""Nested requests on the deployed Apache: an upstream that calls back into auditgate while
the gateway request that reached it waits.  This is the deadlock auditgate was born from
(see DESIGN.md); the two daemon groups make it impossible, at any load.

Figures (latency percentiles per load) go to test-artifacts/nested-requests.txt.
"""

from __future__ import annotations

import secrets
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.deployed.conftest import BASE_URL, CA_FILE, https_session, settled_events
from tests.deployed.load import call, closed_loop, describe, group_capacity, percentiles, record
from tests.upstream import CallbackUpstream, TLSRelay

pytestmark = pytest.mark.deployed

SECONDS_PER_LEVEL = 6
# No nested call may come near the client's timeout: a deadlock would show as timeouts.  The
# callbacks of 512 gateway threads share the API group's 8 threads and the test host's 2 cores
# with the 2,048 clients: seconds of queueing at 4x, which is not a deadlock.
CLIENT_TIMEOUT = 60.0
CALLBACK_TIMEOUT = 30.0
_local = threading.local()


def session() -> requests.Session:
    if not hasattr(_local, "session"):
        _local.session = https_session()
    return _local.session


def introspect_back(credentials: dict[str, str]):
    """The upstream asks auditgate whether the identity assertion it received is active."""

    def callback(handler) -> tuple[int, float]:
        started = time.monotonic()
        response = session().post(
            f"{BASE_URL}/api/introspect",
            data={"token": handler.headers["X-Auditgate-Identity"]},
            auth=(credentials["name"], credentials["key"]),
            timeout=CALLBACK_TIMEOUT,
        )
        active = response.status_code == 200 and response.json()["active"] is True
        return (200 if active else 599), time.monotonic() - started

    return callback


def read_audit_back(admin_token: str):
    """The upstream, as an auditor, reads the gateway's own audit event of the request it is serving."""

    def callback(handler) -> tuple[int, float]:
        started = time.monotonic()
        response = session().get(
            f"{BASE_URL}/api/audit/events/",
            params={"request_id": handler.headers["X-Request-ID"]},
            headers={"Authorization": f"Token {admin_token}"},
            timeout=CALLBACK_TIMEOUT,
        )
        # The attempt is committed before the request is forwarded: it is already there.
        found = response.status_code == 200 and len(response.json()["results"]) == 1
        return (200 if found else 599), time.monotonic() - started

    return callback


@pytest.fixture
def nested_upstream(request, register_upstream, admin_token):
    """A registered upstream whose every answer waits for its call back into auditgate."""
    credentials: dict[str, str] = {}
    variant = request.param
    callback = introspect_back(credentials) if variant == "introspect" else read_audit_back(admin_token)
    with CallbackUpstream(callback) as server:
        key = secrets.token_urlsafe(24)
        credentials["name"] = register_upstream("/", base_url=server.url, identity_key=key)
        credentials["key"] = key
        time.sleep(1.1)  # the documented bound for a new upstream to reach every process
        yield credentials["name"], variant


@pytest.mark.parametrize("nested_upstream", ["introspect", "audit_read"], indirect=True)
def test_nested_calls_back_into_auditgate_never_deadlock_at_up_to_4x_capacity(nested_upstream, admin_token):
    name, variant = nested_upstream
    capacity = group_capacity("GW")
    for multiple in (1, 2, 4):
        concurrency = multiple * capacity
        outcomes = closed_loop(
            concurrency, SECONDS_PER_LEVEL, lambda: call(admin_token, f"/gw/{name}/nested", CLIENT_TIMEOUT)
        )
        label = f"nested {variant} at {multiple}x ({concurrency} concurrent)"
        record("nested-requests.txt", f"{label}: {describe(outcomes)}")
        failed = [o for o in outcomes if o.status != 200]
        assert not failed, f"{len(failed)} of {len(outcomes)} failed at {multiple}x: {failed[:5]}"
        # Far from any timeout: nothing waited for a thread that could never come free.
        assert percentiles([o.seconds for o in outcomes])["max"] < CALLBACK_TIMEOUT


def test_an_upstream_pointing_at_the_gateway_itself_gets_508_after_the_hop_limit(register_upstream, admin,
                                                                                  admin_token):  # fmt: skip
    url = urlsplit(BASE_URL)
    with TLSRelay(url.hostname, url.port or 443, CA_FILE) as relay:
        name = register_upstream("/", credential_header="Authorization", credential_value=f"Token {admin_token}")
        upstream = admin.get(f"{BASE_URL}/api/upstreams/", params={"name": name}).json()["results"][0]
        # The gateway authenticates each pass with the injected token, so only the hop count stops it.
        assert admin.patch(upstream["url"], json={"base_url": f"{relay.url}/gw/{name}"}).status_code == 200
        time.sleep(1.1)
        started = time.monotonic()
        response = admin.get(f"{BASE_URL}/gw/{name}/loop", timeout=CLIENT_TIMEOUT)
        elapsed = time.monotonic() - started
    assert response.status_code == 508
    # The gate's own forwarding passes the signed hop level on, which stops the loop at the
    # same pass as the hop count in Via would (apps.gateway.tracing).
    assert response.json()["code"] == "too_many_hops"
    assert elapsed < 5, "a loop must be cut at once, not by a timeout"
    events = settled_events(admin, {"upstream": name})
    # The outer passes are allowed and relay the innermost pass's 508; that one is the denial.
    denied = [e for e in events if e["reason"] == "too_many_hops"]
    assert len(denied) == 1 and denied[0]["status"] == 508
    assert [e["status"] for e in events if e["decision"] == "allow"] == [508, 508, 508]
