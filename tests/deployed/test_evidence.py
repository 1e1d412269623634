"""Evidence capture on the deployed system (apps.audit.evidence): an upstream that echoes every
secret it receives, auditors reading the redacted bodies (each read in the trail), a non-auditor
refused, the size cap, and ``audit_verify`` catching a blob changed with the privileged account
(restored afterwards, so the rest of the suite finds the trail intact)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.deployed.conftest import BASE_URL, fresh_token, https_session, manage, manage_ok, settled_event
from tests.deployed.test_database_grants import ADMIN_ENV_FILE, ENV_FILE, connect, rows

pytestmark = pytest.mark.deployed

CREDENTIAL = "deployed-evidence-credential-0123456789"
IDENTITY_KEY = "deployed-evidence-identity-0123456789"
REDACTED = "[redacted]"


@pytest.fixture
def capturing(register_upstream) -> str:
    return register_upstream(
        capture_evidence=True, credential_header="X-Api-Key", credential_value=CREDENTIAL,
        identity_key=IDENTITY_KEY, evidence_redact_fields=["password"],
    )  # fmt: skip


@pytest.fixture
def privileged() -> Iterator:
    """The migration account: what an attacker with the database's keys would use."""
    connection = connect(ENV_FILE, ADMIN_ENV_FILE)
    connection.autocommit(True)
    try:
        yield connection
    finally:
        connection.close()


def captured_call(admin, upstream: str, admin_token: str) -> dict:
    payload = {"user": "bob", "profile": {"password": "hunter2"}, "note": f"token {admin_token}"}
    response = admin.post(f"{BASE_URL}/gw/{upstream}/allowed/login", json=payload, timeout=10)
    assert response.status_code == 200, response.text
    assert CREDENTIAL in response.text  # the echo upstream really answers the injected credential
    return settled_event(admin, response.headers["X-Request-ID"])


def evidence_of(session, event_id: int, direction: str = "") -> object:
    return session.get(f"{BASE_URL}/api/audit/events/{event_id}/evidence/{direction}", timeout=10)


def test_auditors_read_captured_bodies_redacted_and_each_read_is_in_the_trail(admin, admin_token, capturing):
    event = captured_call(admin, capturing, admin_token)
    meta = evidence_of(admin, event["id"])
    assert meta.status_code == 200, meta.text
    request, response = meta.json()["request"], meta.json()["response"]
    assert dict(request["headers"])["X-Api-Key"] == REDACTED
    assert "field:password" in request["redacted"] and "secret" in request["redacted"]
    bodies = {}
    for direction in ("request", "response"):
        body = evidence_of(admin, event["id"], f"{direction}/")
        assert body.status_code == 200, body.text
        assert body.headers["Content-Type"] == "application/octet-stream"
        assert body.headers["X-Content-Type-Options"] == "nosniff"
        assert body.headers["Content-Disposition"].startswith("attachment;")
        for secret in (CREDENTIAL, IDENTITY_KEY, admin_token, "hunter2", "v1;user="):
            assert secret.encode() not in body.content, (direction, secret)
        bodies[direction] = body.content
    assert json.loads(bodies["response"])["headers"]["x-api-key"] == REDACTED
    assert response["sha256"] and not response["truncated"]
    reads = admin.get(f"{BASE_URL}/api/audit/events/", params={"event_type": "audit.evidence_read"}, timeout=10)
    newest = [(e["object_id"], e["object_repr"]) for e in reads.json()["results"][:3]]
    assert newest == [(str(event["id"]), "response"), (str(event["id"]), "request"), (str(event["id"]), "metadata")]


def test_a_user_who_is_not_an_auditor_is_refused(admin, admin_token, capturing):
    event = captured_call(admin, capturing, admin_token)
    with https_session() as user:
        user.headers["Authorization"] = f"Token {fresh_token('evidence-reader', '--scope', 'audit:read')}"
        for direction in ("", "request/"):
            refused = evidence_of(user, event["id"], direction)
            assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")


def test_only_the_first_bytes_of_a_long_body_are_kept(admin, register_upstream):
    upstream = register_upstream("/bytes", capture_evidence=True, evidence_max_bytes=100)
    response = admin.get(f"{BASE_URL}/gw/{upstream}/bytes/5000", timeout=10)
    event = settled_event(admin, response.headers["X-Request-ID"])
    kept = evidence_of(admin, event["id"]).json()["response"]
    assert (event["response_bytes"], kept["bytes"], kept["truncated"]) == (5000, 100, True)
    assert evidence_of(admin, event["id"], "response/").content == response.content[:100]


def sealed_through(privileged) -> int:
    return rows(privileged, "SELECT COALESCE(MAX(last_seq), 0) FROM audit_auditseal")[0][0]


def wait_until_sealed(privileged, event_id: int, timeout: float = 240) -> None:
    """The sealer only seals what is older than its grace window (60 s)."""
    deadline = time.monotonic() + timeout
    while sealed_through(privileged) < event_id:
        assert time.monotonic() < deadline, f"event {event_id} not sealed within {timeout} s"
        manage_ok("audit_seal", "--all")
        time.sleep(5)


def test_audit_verify_finds_a_captured_body_changed_in_the_database(admin, admin_token, capturing, privileged):
    event = captured_call(admin, capturing, admin_token)
    key = evidence_of(admin, event["id"]).json()["request"]["sha256"]
    wait_until_sealed(privileged, event["id"])
    (original,) = rows(privileged, "SELECT content FROM audit_evidenceblob WHERE sha256 = %s", (key,))[0]
    try:
        rows(privileged, "UPDATE audit_evidenceblob SET content = %s WHERE sha256 = %s", (b'{"forged":1}', key))
        result = manage("audit_verify", "--json", "--no-progress")
        report = json.loads(result.stdout)
        assert result.returncode == 1
        assert {"kind": "evidence_mismatch", "seq": event["id"], "detail": "the captured request body was changed"} in (
            report["problems"]
        )
        refused = evidence_of(admin, event["id"], "request/")
        assert (refused.status_code, refused.json()["code"]) == (409, "evidence_altered")
    finally:
        rows(privileged, "UPDATE audit_evidenceblob SET content = %s WHERE sha256 = %s", (original, key))
    result = manage("audit_verify", "--json", "--no-progress")
    assert not [p for p in json.loads(result.stdout)["problems"] if p["seq"] == event["id"]]
