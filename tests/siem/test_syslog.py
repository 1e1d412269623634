"""RFC 5424 messages and octet-counted frames (apps.siem.syslog), against golden examples."""

import orjson

from apps.siem import syslog
from apps.siem.lines import CHECKPOINT, EVENT, Line

ALLOWED = {
    "id": 42, "event_type": "gateway.request", "occurred_at": "2026-01-02T03:04:05.123456Z",
    "decision": "allow", "reason": "allowed", "status": 200, "actor_username": "alice",
    "upstream_name": "crm", "request_id": "aBc-1",
}  # fmt: skip
DENIED = {**ALLOWED, "id": 43, "event_type": "gateway.denied", "decision": "deny", "reason": "no_matching_rule",
          "status": 403, "actor_username": 'eve"]\\', "request_id": "r2"}  # fmt: skip


def line(fields: dict, kind: str = EVENT) -> Line:
    return Line(kind, fields.get("id") or fields["last_seq"], orjson.dumps(fields), fields)


def test_an_allowed_event_is_a_notice_with_its_type_as_msgid_and_the_json_after_a_bom():
    message = syslog.message(line(ALLOWED), facility=10, hostname="gate1", procid=777)
    assert message == (
        b'<85>1 2026-01-02T03:04:05.123456Z gate1 auditgate 777 gateway.request [auditgate@32473 seq="42"'
        b' event_type="gateway.request" decision="allow" reason="allowed" status="200" actor_username="alice"'
        b' upstream_name="crm" request_id="aBc-1"] \xef\xbb\xbf' + orjson.dumps(ALLOWED)
    )


def test_a_denial_is_a_warning_and_its_parameter_values_are_escaped():
    message = syslog.message(line(DENIED), facility=16, hostname="gate1", procid=1)
    assert message.startswith(b"<132>1 ")  # local0 (16) * 8 + warning (4)
    assert b'actor_username="eve\\"\\]\\\\"' in message


def test_a_checkpoint_is_info_with_its_range_and_head_hash():
    fields = {"type": CHECKPOINT, "first_seq": 1, "last_seq": 9, "head_hash": "ab" * 32,
              "sealed_at": "2026-01-02T03:05:00.5+00:00"}  # fmt: skip
    message = syslog.message(line(fields, CHECKPOINT), facility=10, hostname="gate1", procid=1)
    assert message.startswith(
        b'<86>1 2026-01-02T03:05:00.5Z gate1 auditgate 1 checkpoint [auditgate@32473 seq="9" first_seq="1" head_hash="'
    )


def test_header_fields_keep_printable_ascii_within_their_length():
    message = syslog.message(line({**ALLOWED, "event_type": "x" * 40}), facility=10, hostname="h é", procid=1)
    assert b" h auditgate 1 " + b"x" * 32 + b" [" in message


def test_a_frame_counts_the_octets_of_the_message():
    assert syslog.frame("é".encode()) == b"2 \xc3\xa9"
    assert syslog.frame(b"<85>1 - - - - - -") == b"17 <85>1 - - - - - -"
