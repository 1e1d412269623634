"""Evidence capture through the gateway (apps.gateway.capturing, apps.audit.evidence), against the
real echo upstream: what is captured, when, and that nothing the gateway knows is secret is kept."""

from __future__ import annotations

import hashlib
import json

import pytest

from apps.audit.evidence.redaction import REDACTED
from apps.audit.models import EvidenceBlob
from apps.audit.recording import BodyCount, CapturingCount
from apps.gateway import relay
from apps.gateway.models import AccessRule, Upstream
from tests.gateway.test_proxy_view import body_of, only_event

pytestmark = pytest.mark.django_db

CREDENTIAL = "upstream-credential-0123456789"
IDENTITY_KEY = "upstream-identity-key-0123456789"


@pytest.fixture
def alice(make_user):
    return make_user("alice")


def upstream_for(server, alice, *, rule_captures: bool = False, **fields) -> Upstream:
    target = Upstream.objects.create(name="echo", base_url=server.url, internal=True, **fields)
    AccessRule.objects.create(upstream=target, user=alice, methods=["GET", "POST"], path_pattern="/",
                              capture_evidence=rule_captures)  # fmt: skip
    return target


def stored(sha256: str) -> bytes:
    return bytes(EvidenceBlob.objects.get(sha256=sha256).content)


def test_a_capturing_upstream_keeps_both_bodies_redacted(upstream_server, alice, client_for):
    upstream_for(upstream_server, alice, capture_evidence=True, credential_header="X-Api-Key",
                 credential_value=CREDENTIAL, identity_key=IDENTITY_KEY, evidence_redact_fields=["password"],
                 evidence_redact_headers=["X-Private"])  # fmt: skip
    token_client = client_for(alice)
    payload = {"user": "bob", "profile": {"PASSWORD": "hunter2"}, "note": CREDENTIAL}
    body_of(token_client.post("/gw/echo/login", data=json.dumps(payload), content_type="application/json",
                              HTTP_X_PRIVATE="private-value"))  # fmt: skip
    evidence = only_event().evidence
    request, response = evidence["request"], evidence["response"]
    kept = json.loads(stored(request["sha256"]))
    assert kept == {"user": "bob", "profile": {"PASSWORD": REDACTED}, "note": REDACTED}
    assert request["redacted"] == ["field:password", "header:tracestate", "header:x-api-key",
                                   "header:x-auditgate-identity", "header:x-private", "secret"]  # fmt: skip
    sent = dict(request["headers"])
    assert sent["X-Api-Key"] == sent["X-Auditgate-Identity"] == sent["X-Private"] == REDACTED
    # The echo upstream answers every header it received, the injected credential and the
    # signed identity assertion included: none of it is kept, nor the caller's token.
    echoed = stored(response["sha256"])
    token = token_client._credentials["HTTP_AUTHORIZATION"].split()[1]
    for secret in (CREDENTIAL, IDENTITY_KEY, token, "hunter2", "private-value", "v1;user="):
        assert secret.encode() not in echoed, secret
    assert json.loads(echoed)["headers"]["x-api-key"] == REDACTED
    assert response["content_type"] == "application/json" and not response["truncated"]


def test_an_unredacted_body_is_stored_under_the_digest_the_trail_records(upstream_server, alice, client_for):
    upstream_for(upstream_server, alice, capture_evidence=True)
    body = body_of(client_for(alice).get("/gw/echo/bytes/300"))
    event = only_event()
    assert event.evidence["response"]["sha256"] == event.response_sha256 == hashlib.sha256(body).hexdigest()
    assert stored(event.response_sha256) == body
    request = event.evidence["request"]  # a GET without a body: its headers, no blob
    assert (request["sha256"], request["bytes"], request["truncated"]) == ("", 0, False)


def test_beyond_the_cap_only_the_prefix_is_kept(upstream_server, alice, client_for):
    upstream_for(upstream_server, alice, capture_evidence=True, evidence_max_bytes=100)
    body = body_of(client_for(alice).get("/gw/echo/bytes/5000"))
    event = only_event()
    response = event.evidence["response"]
    assert (len(body), event.response_bytes) == (5000, 5000)
    assert (response["bytes"], response["truncated"]) == (100, True)
    assert stored(response["sha256"]) == body[:100]


def test_a_rule_asks_for_evidence_on_an_upstream_that_does_not(upstream_server, alice, client_for):
    upstream_for(upstream_server, alice, rule_captures=True)
    body_of(client_for(alice).post("/gw/echo/x", data=b"abc", content_type="text/plain"))
    assert stored(only_event().evidence["request"]["sha256"]) == b"abc"


def test_without_capture_nothing_is_kept_and_the_relay_counts_as_before(upstream_server, alice, client_for,
                                                                         monkeypatch):  # fmt: skip
    upstream_for(upstream_server, alice)
    counts = []
    real_init = relay.Relay.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        counts.append(type(self._count))

    monkeypatch.setattr(relay.Relay, "__init__", spy)
    body_of(client_for(alice).post("/gw/echo/x", data=b"abc", content_type="text/plain"))
    assert only_event().evidence is None and not EvidenceBlob.objects.exists()
    assert counts == [BodyCount]  # the plain count: no extra work per chunk


def test_a_denied_request_is_never_captured(upstream_server, alice, client_for):
    upstream_for(upstream_server, alice, capture_evidence=True)
    response = client_for(alice).put("/gw/echo/x", data=b"secret body", content_type="text/plain")
    assert response.status_code == 403
    assert only_event().evidence is None and not EvidenceBlob.objects.exists()


def test_a_capturing_count_keeps_at_most_its_cap():
    count = CapturingCount(10)
    for chunk in (b"12345", b"67890abc", b"def"):
        count.add(chunk)
    assert (bytes(count.kept), count.bytes, count.truncated) == (b"1234567890", 16, True)
    assert count.sha256() == hashlib.sha256(b"1234567890abcdef").hexdigest()


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"evidence_max_bytes": 2 * 1024 * 1024}, "evidence_max_bytes"),
        ({"evidence_max_bytes": 0}, "evidence_max_bytes"),
        ({"evidence_redact_fields": [""]}, "evidence_redact_fields"),
        ({"evidence_redact_fields": "password"}, "evidence_redact_fields"),
        ({"evidence_redact_headers": ["Bad Header"]}, "evidence_redact_headers"),
    ],
)
def test_the_api_refuses_bad_evidence_settings(make_user, client_for, fields, code):
    admin = client_for(make_user(staff=True))
    payload = {"name": "ev", "base_url": "http://127.0.0.1:9", "internal": True, "capture_evidence": True, **fields}
    response = admin.post("/api/upstreams/", payload, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert list(response.json()["errors"]) == [code]


def test_the_api_sets_evidence_on_upstreams_and_rules(make_user, client_for):
    admin = client_for(make_user("root", staff=True))
    created = admin.post("/api/upstreams/", {"name": "ev", "base_url": "http://127.0.0.1:9", "internal": True,
                                             "capture_evidence": True, "evidence_max_bytes": 1024,
                                             "evidence_redact_fields": ["password"],
                                             "evidence_redact_headers": ["X-Private"]}, format="json")  # fmt: skip
    assert created.status_code == 201, created.content
    assert {k: created.json()[k] for k in ("capture_evidence", "evidence_max_bytes", "evidence_redact_fields")} == {
        "capture_evidence": True, "evidence_max_bytes": 1024, "evidence_redact_fields": ["password"]
    }  # fmt: skip
    rule = admin.post("/api/rules/", {"upstream": "ev", "user": "root", "capture_evidence": True}, format="json")
    assert (rule.status_code, rule.json()["capture_evidence"]) == (201, True)


def test_evidence_that_cannot_be_stored_never_costs_the_outcome(upstream_server, alice, client_for, monkeypatch):
    from apps.audit.evidence import storage

    upstream_for(upstream_server, alice, capture_evidence=True)
    monkeypatch.setattr(storage, "save", lambda event_id, bodies: False)
    body_of(client_for(alice).post("/gw/echo/x", data=b"abc", content_type="text/plain"))
    event = only_event()
    assert event.status == 200
    assert event.evidence == {"request": {"withheld": "store_failed"}, "response": {"withheld": "store_failed"}}
