"""Joining Apache's access log to the audit trail on the request id."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.audit.access_log import parse, unseen_by_django

LINES = [
    '127.0.0.1 - - [24/Nov/2026:22:58:22 +0000] "GET /gw/crm/x?y=1 HTTP/1.1" 200 512 "-" "python-requests/2.32" '
    "1234 aaaaaaaaaaaaaaaaaaaaaaa1",
    '127.0.0.1 - - [24/Nov/2026:22:58:23 +0000] "GET /gw/crm/x HTTP/1.1" 504 247 "-" "a \\"quoted\\" agent" '
    "5001234 aaaaaaaaaaaaaaaaaaaaaaa2",
    '127.0.0.1 - - [24/Nov/2026:22:58:24 +0000] "GET /api/me/ HTTP/1.1" 200 80 "-" "curl" 900 aaaaaaaaaaaaaaaaaaaaaaa3',
    "a line in another format",
    '127.0.0.1 - - [24/Nov/2026:22:58:25 +0000] "\\x16\\x03" 400 0 "-" "-" 10 -',
]


def test_lines_in_the_auditgate_format_are_parsed_with_their_request_id():
    logged = list(parse(LINES))
    assert [r.request_id[-1] for r in logged] == ["1", "2", "3"]
    second = logged[1]
    assert (second.method, second.path, second.status, second.duration_ms) == ("GET", "/gw/crm/x", 504, 5001.234)
    assert second.time == datetime(2026, 11, 24, 22, 58, 23, tzinfo=UTC)


@pytest.mark.django_db
def test_gateway_requests_without_an_audit_event_are_the_ones_django_never_saw(make_event):
    make_event(request_id="aaaaaaaaaaaaaaaaaaaaaaa1")
    unseen = unseen_by_django(parse(LINES))
    assert [(r.request_id, r.status) for r in unseen] == [("aaaaaaaaaaaaaaaaaaaaaaa2", 504)]
    assert unseen_by_django(parse(LINES), since=datetime(2026, 11, 24, 22, 58, 24, tzinfo=UTC)) == []
