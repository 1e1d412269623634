"""Alerts on the deployed host: through the real gateway, denials of one token and a use of a
sensitive upstream each fire an alert that /api/alerts/ lists and the deployed ``audit_alerts``
posts, signed, to a receiver this test runs (HTTPS on 127.0.0.1, signature checked with
``apps.core.webhooks.verify``); a failed verification fires one too.

The test makes rules of its own (their ids key its alerts apart from anything the default rules
or the cron evaluator fire) and deletes them afterwards; nothing in the trail is tampered with:
the failed verification is ``audit_verify`` against a checkpoint file that does not exist.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployed.conftest import BASE_URL, fresh_token, https_session, manage, manage_ok
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.deployed

SECRET = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET.encode()) as running:
        yield running


@pytest.fixture(scope="module")
def secret_file() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="auditgate-alerts-test-") as directory:
        path = Path(directory) / "webhook.secret"
        path.write_text(SECRET)
        path.chmod(0o600)
        yield str(path)


@pytest.fixture
def own_rule(admin) -> Iterator:
    """Creates rules through the API (recorded in the trail); deletes them afterwards."""
    created: list[str] = []

    def make(**fields) -> dict:
        payload = {"name": f"deployed test {secrets.token_hex(4)}", **fields}
        response = admin.post(f"{BASE_URL}/api/alerts/rules/", json=payload, timeout=10)
        assert response.status_code == 201, response.text
        created.append(response.json()["url"])
        return response.json()

    yield make
    for url in created:
        assert admin.delete(url, timeout=10).status_code == 204


def evaluate_and_deliver(receiver: WebhookReceiver, secret_file: str) -> str:
    return manage_ok("audit_alerts", "--once", "--webhook-url", receiver.url,
                     "--webhook-ca-file", str(receiver.ca_file), "--webhook-secret-file", secret_file)  # fmt: skip


def alert_of(admin, rule: dict, receiver: WebhookReceiver, secret_file: str, timeout: float = 30) -> tuple[dict, dict]:
    """The rule's alert as /api/alerts/ lists it and as the receiver got it (signature checked)."""
    deadline = time.monotonic() + timeout
    while True:
        evaluate_and_deliver(receiver, secret_file)
        listed = admin.get(f"{BASE_URL}/api/alerts/", params={"rule": rule["id"]}, timeout=10).json()["results"]
        posted = [a for a in receiver.documents() if a["rule"] == rule["id"]]
        if listed and posted:
            assert len(listed) == 1 and len(posted) == 1, (listed, posted)
            return listed[0], posted[0]
        assert time.monotonic() < deadline, f"no alert for rule {rule['name']}: {listed} {posted}"
        time.sleep(0.5)


def test_denials_of_one_token_fire_an_alert_listed_and_posted(admin, own_rule, registered_upstream, receiver,
                                                              secret_file):  # fmt: skip
    rule = own_rule(kind="denials", threshold=3, window_minutes=1, grouping="token")
    token = fresh_token(f"alerts-{secrets.token_hex(3)}")  # no access rule: every request is denied
    with https_session() as caller:
        caller.headers["Authorization"] = f"Token {token}"
        denied = [caller.get(f"{BASE_URL}/gw/{registered_upstream}/allowed", timeout=10) for _ in range(3)]
    assert [r.status_code for r in denied] == [403, 403, 403]
    listed, posted = alert_of(admin, rule, receiver, secret_file)
    assert listed["kind"] == "denials" and listed["subject"].startswith("token ")
    assert token not in str(listed) and token not in str(posted)  # a key id, never the token
    assert len(listed["event_ids"]) == 3 and posted["event_ids"] == listed["event_ids"]
    assert posted["id"] == listed["id"]
    received = next(r for r in receiver.received if r.accepted and r.json()["id"] == listed["id"])
    assert received.headers["Idempotency-Key"] == f"auditgate-alert-{listed['id']}"
    delivered = admin.get(listed["url"], timeout=10).json()
    assert delivered["delivered"] is True and delivered["attempts"] >= 1


def test_a_use_of_a_sensitive_upstream_fires_an_alert_at_once(admin, own_rule, register_upstream, receiver,
                                                              secret_file):  # fmt: skip
    rule = own_rule(kind="sensitive_upstream")
    upstream = register_upstream(sensitive=True)
    response = admin.get(f"{BASE_URL}/gw/{upstream}/allowed", timeout=10)
    assert response.status_code == 200, response.text
    listed, posted = alert_of(admin, rule, receiver, secret_file)
    assert listed["subject"] == f"admin on {upstream}" and posted["detail"]["upstream"] == upstream
    assert posted["detail"]["method"] == "GET" and posted["detail"]["actor"] == "admin"


def test_a_failed_verification_fires_an_alert(admin, own_rule, receiver, secret_file, tmp_path):
    rule = own_rule(kind="verify_failed")
    result = manage("audit_verify", "--no-progress", "--checkpoint-file", str(tmp_path / "missing.jsonl"))
    assert result.returncode != 0 and "NOT intact" in result.stderr, result.stderr[-2000:]
    listed, posted = alert_of(admin, rule, receiver, secret_file)
    assert listed["kind"] == "verify_failed"
    assert posted["detail"]["problems"][0]["kind"] == "checkpoint_missing"


def test_the_cron_job_evaluates_and_the_rules_need_an_administrator(admin, http):
    crontab = Path("/etc/cron.d/auditgate").read_text()
    assert "audit_alerts --seconds 58" in crontab and "audit_verify --no-progress" in crontab
    rules = admin.get(f"{BASE_URL}/api/alerts/rules/", timeout=10).json()["results"]
    assert {"denials per token", "verification failed"} <= {r["name"] for r in rules}
    assert http.get(f"{BASE_URL}/api/alerts/", timeout=10).status_code in (401, 403)
