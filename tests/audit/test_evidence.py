"""Evidence capture on the trail's side (apps.audit.evidence): redaction, storage, sealing
(versions 1, 2 and 3 side by side), verification, retention, and the auditors' reads."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from apps.audit import archives, events, retention, sealing
from apps.audit.evidence.capture import Capture
from apps.audit.evidence.redaction import REDACTED, Redaction, Withheld, redact_body, redact_headers
from apps.audit.models import AuditEvent, AuditEventHash, EvidenceBlob, EvidenceLink
from tests.audit.seals import KEYS, LONG_AGO

JSON = [("Content-Type", "application/json")]
FORM = [("Content-Type", "application/x-www-form-urlencoded")]
SECRET = "s3cr3t-credential/value"


def rules(fields=(), headers=(), secrets=()) -> Redaction:
    return Redaction.of(fields=fields, headers=headers, secrets=secrets)


def sql(statement: str, *params) -> None:
    """What an attacker with the privileged database account does."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


# --- redaction -------------------------------------------------------------------------------


def test_configured_json_keys_are_redacted_at_any_depth_and_in_any_letter_case():
    body = json.dumps({"user": "bob", "Password": "pw1", "items": [{"token": {"a": 1}}, {"PASSWORD": "pw2"}]})
    kept = redact_body(body.encode(), JSON, truncated=False, rules=rules(fields=["password", "token"]))
    assert json.loads(kept.body) == {"user": "bob", "Password": REDACTED,
                                     "items": [{"token": REDACTED}, {"PASSWORD": REDACTED}]}  # fmt: skip
    assert kept.redacted == {"field:password", "field:token"}


def test_a_json_body_without_the_configured_keys_is_stored_byte_for_byte():
    body = b'{ "user" : "bob" }'
    assert redact_body(body, [("Content-Type", "application/problem+json")], truncated=False,
                       rules=rules(fields=["password"])).body == body  # fmt: skip


def test_form_fields_are_redacted():
    kept = redact_body(b"user=bob&PassWord=hunter2&x=", FORM, truncated=False, rules=rules(fields=["password"]))
    assert kept.body == b"user=bob&PassWord=%5Bredacted%5D&x="


@pytest.mark.parametrize(
    ("body", "headers", "truncated", "why"),
    [
        (b'{"password": "pw', JSON, True, Withheld.TRUNCATED),
        (b'{"password": ', JSON, False, Withheld.UNPARSEABLE),
        (b"\xff\xfe\x00", JSON, False, Withheld.UNPARSEABLE),
        (b"password=pw", [("Content-Type", "text/plain")], False, Withheld.UNSUPPORTED_TYPE),
        (b"password=pw", [], False, Withheld.UNSUPPORTED_TYPE),
        (b"--b\r\npassword", [("Content-Type", "multipart/form-data; boundary=b")], False, Withheld.UNSUPPORTED_TYPE),
    ],
)
def test_a_body_that_cannot_be_parsed_whole_is_withheld_when_fields_must_be_redacted(body, headers, truncated, why):
    kept = redact_body(body, headers, truncated=truncated, rules=rules(fields=["password"]))
    assert (kept.body, kept.withheld) == (None, why)


def test_a_compressed_body_is_always_withheld():
    kept = redact_body(b"\x1f\x8b...", [("Content-Encoding", "gzip")], truncated=False, rules=rules())
    assert (kept.body, kept.withheld) == (None, Withheld.CONTENT_ENCODED)


def test_known_secrets_are_redacted_wherever_they_appear_raw_json_escaped_or_url_encoded():
    body = json.dumps({"echo": SECRET, "nested": {"h": f"Bearer {SECRET}"}}) + "&q=s3cr3t-credential%2Fvalue"
    escaped = json.dumps({"x": 'quote"secret'})
    kept = redact_body(body.encode(), [], truncated=False, rules=rules(secrets=[SECRET]))
    assert SECRET.encode() not in kept.body and b"%2Fvalue" not in kept.body
    assert kept.body.count(REDACTED.encode()) == 3 and kept.redacted == {"secret"}
    assert redact_body(escaped.encode(), [], truncated=False, rules=rules(secrets=['quote"secret'])).body == (
        b'{"x": "[redacted]"}'
    )


def test_a_truncated_body_loses_a_tail_that_could_be_the_start_of_a_secret():
    kept = redact_body(b"abc s3cr3t-cre", [], truncated=True, rules=rules(secrets=[SECRET]))
    assert kept.body == b"abc " and kept.redacted == {"secret"}


def test_credential_headers_and_configured_ones_are_redacted_and_secrets_in_other_values():
    sent = [("Authorization", "Token x"), ("X-Api-Key", "k"), ("X-Custom", "c"), ("X-Echo", f"v={SECRET}"),
            ("Tracestate", "auditgate=1-2-3-mac"), ("Accept", "*/*")]  # fmt: skip
    kept, redacted = redact_headers(sent, rules(headers=["x-api-key", "X-CUSTOM"], secrets=[SECRET]))
    assert kept == [["Authorization", REDACTED], ["X-Api-Key", REDACTED], ["X-Custom", REDACTED],
                    ["X-Echo", f"v={REDACTED}"], ["Tracestate", REDACTED], ["Accept", "*/*"]]  # fmt: skip
    assert redacted == {"header:authorization", "header:x-api-key", "header:x-custom", "header:tracestate", "secret"}


# --- capture and storage -----------------------------------------------------------------------


def captured(body: bytes, *, cap: int = 1000, fields=(), secrets=(), response: bytes | None = None) -> Capture:
    capture = Capture(rules(fields=fields, secrets=secrets), cap)
    capture.request.headers = list(JSON)
    capture.request.count.add(body)
    if response is not None:
        capture.response.headers = [("Content-Type", "text/plain")]
        capture.response.count.add(response)
    return capture


@pytest.mark.django_db
def test_an_unredacted_body_is_stored_under_the_trails_own_digest_and_only_once(make_event):
    body = b'{"a": 1}'
    first, second = make_event(), make_event()
    for event in (first, second):
        evidence = captured(body).store(event.pk)
    assert evidence == {"request": {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body), "truncated": False,
                                    "redacted": [], "headers": [["Content-Type", "application/json"]],
                                    "content_type": "application/json"}}  # fmt: skip
    assert EvidenceBlob.objects.filter(sha256=hashlib.sha256(body).hexdigest()).count() == 1
    assert set(EvidenceLink.objects.values_list("event_id", "direction")) == {(first.pk, "request"),
                                                                              (second.pk, "request")}  # fmt: skip


@pytest.mark.django_db
def test_beyond_the_cap_the_prefix_is_stored_and_marked_truncated(make_event):
    capture = captured(b"x" * 50, cap=10, response=b"")
    evidence = capture.store(make_event().pk)
    assert (evidence["request"]["bytes"], evidence["request"]["truncated"]) == (10, True)
    assert bytes(EvidenceBlob.objects.get(sha256=evidence["request"]["sha256"]).content) == b"x" * 10
    assert evidence["response"]["sha256"] == "" and evidence["response"]["bytes"] == 0  # an empty body: no blob


@pytest.mark.django_db
def test_a_body_that_cannot_be_stored_is_recorded_as_withheld(make_event, monkeypatch):
    def broken(*args, **kwargs):
        raise DatabaseError("no room")

    monkeypatch.setattr(EvidenceBlob.objects, "bulk_create", broken)
    assert captured(b"{}", response=b"ok").store(make_event().pk) == {
        "request": {"withheld": Withheld.STORE_FAILED}, "response": {"withheld": Withheld.STORE_FAILED}
    }  # fmt: skip
    assert not EvidenceLink.objects.exists()


# --- sealing and verification ------------------------------------------------------------------

V2_COLUMNS_AFTER_V1 = ("trace_id", "parent_event_id", "close_code")


def row_of(event: AuditEvent, columns: tuple[str, ...]) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)} FROM audit_auditevent WHERE id = %s", [event.pk])
        (row,) = cursor.fetchall()
    return row


def sealed_as(row: tuple) -> str:
    data = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=lambda v: v.isoformat()).encode()
    return hashlib.sha256(bytes(32) + data).hexdigest()


@pytest.mark.django_db
@pytest.mark.usefixtures("seal_settings")
def test_a_version_2_event_is_sealed_exactly_as_before_version_3(make_event):
    from tests.audit.test_sealing import V1_COLUMNS

    old = make_event(schema_version=2, recorded_at=LONG_AGO, trace_id="a" * 32, close_code=1000,
                     changes={"name": ["a", "é"]})  # fmt: skip
    v2_row = row_of(old, (*V1_COLUMNS, *V2_COLUMNS_AFTER_V1))
    sealing.seal()
    assert AuditEventHash.objects.get(seq=old.pk).hash == sealed_as(v2_row)
    assert sealing.verify().ok


@pytest.mark.django_db
@pytest.mark.usefixtures("seal_settings")
def test_a_version_1_event_is_still_sealed_without_any_later_column(make_event):
    from tests.audit.test_sealing import V1_COLUMNS

    old = make_event(schema_version=1, recorded_at=LONG_AGO)
    v1_row = row_of(old, V1_COLUMNS)
    sealing.seal()
    assert AuditEventHash.objects.get(seq=old.pk).hash == sealed_as(v1_row)


@pytest.mark.django_db
@pytest.mark.usefixtures("seal_settings")
def test_evidence_is_sealed_and_written_into_an_older_event_it_is_found(make_event):
    from tests.audit.test_sealing import V1_COLUMNS

    new = make_event(recorded_at=LONG_AGO, evidence={"request": {"sha256": "", "bytes": 0}})
    old = make_event(schema_version=2, recorded_at=LONG_AGO)
    assert new.schema_version == 3
    v3_row = row_of(new, (*V1_COLUMNS, *V2_COLUMNS_AFTER_V1, "evidence"))
    sealing.seal()
    assert AuditEventHash.objects.get(seq=new.pk).hash == sealed_as(v3_row)
    sql("UPDATE audit_auditevent SET evidence = %s WHERE id = %s", '{"request": {"withheld": "x"}}', old.pk)
    report = sealing.verify()
    assert (report.first_bad_seq, report.problems[0].kind) == (old.pk, "altered")


@pytest.fixture
def sealed_capture(db, seal_settings, make_event):
    """A sealed event whose request body was captured, and one before it without evidence."""
    make_event(recorded_at=LONG_AGO)
    event = make_event(recorded_at=LONG_AGO)
    evidence = captured(b'{"a": "captured"}').store(event.pk)
    sql("UPDATE audit_auditevent SET evidence = %s WHERE id = %s", json.dumps(evidence), event.pk)
    sealing.seal()
    assert sealing.verify(keys=KEYS).ok
    return event, evidence["request"]["sha256"]


def test_verify_finds_a_captured_body_that_was_changed(sealed_capture):
    event, key = sealed_capture
    sql("UPDATE audit_evidenceblob SET content = %s WHERE sha256 = %s", b'{"a": "forged!!"}', key)
    report = sealing.verify(keys=KEYS)
    assert [(p.kind, p.seq) for p in report.problems] == [("evidence_mismatch", event.pk)]


def test_verify_finds_a_captured_body_that_was_deleted_with_its_link(sealed_capture):
    event, key = sealed_capture
    sql("DELETE FROM audit_evidencelink WHERE sha256 = %s", key)
    sql("DELETE FROM audit_evidenceblob WHERE sha256 = %s", key)
    report = sealing.verify(keys=KEYS)
    assert (report.first_bad_seq, [p.kind for p in report.problems]) == (event.pk, ["evidence_missing"])


# --- retention ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.usefixtures("seal_settings")
def test_a_purge_deletes_the_purged_events_links_and_the_blobs_no_kept_event_names(make_event, tmp_path):
    old_time = timezone.now() - timedelta(days=400)
    shared, alone = b'{"shared": 1}', b'{"alone": 1}'
    old = [make_event(request_id=f"old{i}", occurred_at=old_time, recorded_at=LONG_AGO) for i in range(2)]
    recent = make_event(request_id="recent", recorded_at=LONG_AGO)
    for event, body in ((old[0], shared), (old[1], alone), (recent, shared)):
        evidence = captured(body).store(event.pk)
        sql("UPDATE audit_auditevent SET evidence = %s WHERE id = %s", json.dumps(evidence), event.pk)
    sealing.seal(limit=2)
    sealing.seal()
    purge = retention.purge(timezone.now() - timedelta(days=365), tmp_path)
    assert purge.through_seq == old[1].pk
    assert set(EvidenceBlob.objects.values_list("sha256", flat=True)) == {hashlib.sha256(shared).hexdigest()}
    assert list(EvidenceLink.objects.values_list("event_id", flat=True)) == [recent.pk]
    assert sealing.verify(keys=KEYS).ok
    # The archive keeps the sealed digests, never the bodies, and still re-chains.
    assert b"alone" not in Path(purge.export_file).read_bytes()
    assert archives.verify_archive(Path(purge.export_file), keys=KEYS).ok


# --- the auditors' reads -----------------------------------------------------------------------


@pytest.fixture
def with_evidence(db, make_event):
    event = make_event(upstream_name="crm", upstream_id=None)
    capture = captured(b'{"a": "<script>x</script>"}', response=b"")
    capture.response.headers = [("Content-Encoding", "gzip")]
    capture.response.count.add(b"\x1f\x8b")
    evidence = capture.store(event.pk)
    sql("UPDATE audit_auditevent SET evidence = %s WHERE id = %s", json.dumps(evidence), event.pk)
    return event


def reads() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type=events.AUDIT_EVIDENCE_READ).order_by("id"))


def test_an_auditor_reads_the_evidence_and_each_read_is_audited(with_evidence, make_user, client_for):
    auditor = client_for(make_user(groups=("auditor",)))
    meta = auditor.get(f"/api/audit/events/{with_evidence.pk}/evidence/")
    assert meta.status_code == 200, meta.content
    assert meta.json()["request"]["headers"] == [["Content-Type", "application/json"]]
    response = meta.json()["response"]
    assert (response["withheld"], response["body_url"]) == (Withheld.CONTENT_ENCODED, None)
    body = auditor.get(meta.json()["request"]["body_url"])
    assert (body.status_code, body.content) == (200, b'{"a": "<script>x</script>"}')
    assert body["Content-Type"] == "application/octet-stream" and body["X-Content-Type-Options"] == "nosniff"
    assert body["Content-Disposition"] == f'attachment; filename="event-{with_evidence.pk}-request.bin"'
    assert [(e.object_id, e.object_repr) for e in reads()] == [(str(with_evidence.pk), "metadata"),
                                                               (str(with_evidence.pk), "request")]  # fmt: skip


def test_a_non_auditor_is_refused_and_nothing_is_read(with_evidence, make_user, client_for):
    user = client_for(make_user())
    for path in ("", "request/"):
        response = user.get(f"/api/audit/events/{with_evidence.pk}/evidence/{path}")
        assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert reads() == []


def test_evidence_that_is_not_there_is_a_404_with_its_code(with_evidence, make_event, make_user, client_for):
    auditor = client_for(make_user(groups=("auditor",)))
    plain = make_event()
    cases = [(f"{plain.pk}/evidence/", "evidence_not_captured"), (f"{with_evidence.pk}/evidence/response/",
             "evidence_withheld"), (f"{plain.pk + 1000}/evidence/request/", "not_found")]  # fmt: skip
    for path, code in cases:
        response = auditor.get(f"/api/audit/events/{path}")
        assert (response.status_code, response.json()["code"]) == (404, code), path
    assert reads() == []


def test_a_read_the_trail_cannot_record_is_refused(with_evidence, make_user, client_for, monkeypatch):
    auditor = client_for(make_user(groups=("auditor",)))

    def unavailable(*args, **kwargs):
        raise DatabaseError("audit table unavailable")

    monkeypatch.setattr(events, "record", unavailable)
    response = auditor.get(f"/api/audit/events/{with_evidence.pk}/evidence/request/")
    assert (response.status_code, response.json()["code"]) == (503, "audit_unavailable")
    assert b"script" not in response.content


def test_a_changed_body_is_not_served(with_evidence, make_user, client_for):
    key = AuditEvent.objects.get(pk=with_evidence.pk).evidence["request"]["sha256"]
    sql("UPDATE audit_evidenceblob SET content = %s WHERE sha256 = %s", b"forged", key)
    response = client_for(make_user(groups=("auditor",))).get(f"/api/audit/events/{with_evidence.pk}/evidence/request/")
    assert (response.status_code, response.json()["code"]) == (409, "evidence_altered")


@pytest.mark.django_db
def test_the_evidence_goes_through_the_outcome_spool_unchanged(make_event):
    from apps.audit import spool

    event = make_event(completed_at=None)
    evidence = captured('{"a": "é"}'.encode(), response=b"ok").store(event.pk)
    line = spool.encode(event.pk, {"status": 200, "completed_at": timezone.now(), "evidence": evidence})
    assert spool.write_outcomes(spool.decode(line)) == 1
    assert AuditEvent.objects.get(pk=event.pk).evidence == evidence


def test_only_auditors_export_the_evidence_metadata(with_evidence, make_user, client_for):
    owner = make_user()
    sql("UPDATE audit_auditevent SET actor_id = %s WHERE id = %s", owner.pk, with_evidence.pk)
    for user, shown in ((owner, False), (make_user(groups=("auditor",)), True)):
        export = client_for(user).get("/api/audit/events/export/?format=ndjson")
        lines = [json.loads(line) for line in b"".join(export.streaming_content).splitlines()]
        (line,) = [line for line in lines if line["id"] == with_evidence.pk]
        assert (line["evidence"] is not None) == shown
