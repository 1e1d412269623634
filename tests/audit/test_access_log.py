"""Joining Apache's access log to the audit trail on the request id."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.audit.access_log import parse, read_lines, routed_path, unseen_by_django, with_rotations

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
    assert [r.request_id and r.request_id[-1] for r in logged] == ["1", "2", "3", None]
    second = logged[1]
    assert (second.method, second.path, second.status, second.duration_ms) == ("GET", "/gw/crm/x", 504, 5001.234)
    assert second.time == datetime(2026, 11, 24, 22, 58, 23, tzinfo=UTC)


@pytest.mark.django_db
def test_gateway_requests_without_an_audit_event_are_the_ones_django_never_saw(make_event):
    make_event(request_id="aaaaaaaaaaaaaaaaaaaaaaa1")
    unseen = unseen_by_django(parse(LINES))
    assert [(r.request_id, r.status) for r in unseen] == [("aaaaaaaaaaaaaaaaaaaaaaa2", 504)]
    assert unseen_by_django(parse(LINES), since=datetime(2026, 11, 24, 22, 58, 24, tzinfo=UTC)) == []


def write_log(path, lines: list[str], written: datetime) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as log:
        log.write("".join(f"{line}\n" for line in lines))
    os.utime(path, (written.timestamp(), written.timestamp()))


def test_the_log_is_read_with_its_rotations_oldest_first_and_gzipped_ones_too(tmp_path):
    log = tmp_path / "auditgate_access.log"
    day = datetime(2026, 11, 24, tzinfo=UTC)
    write_log(tmp_path / "auditgate_access.log.3.gz", ["three days ago"], day.replace(day=21))
    write_log(tmp_path / "auditgate_access.log.2.gz", ["two days ago"], day.replace(day=22))
    write_log(tmp_path / "auditgate_access.log.1", ["yesterday"], day.replace(day=23))
    write_log(log, ["today"], day)
    write_log(tmp_path / "auditgate_access.log.bak", ["not a rotation"], day)
    write_log(tmp_path / "other_access.log.1", ["another log"], day)

    assert [line.strip() for line in read_lines(with_rotations(log))] == [
        "three days ago", "two days ago", "yesterday", "today",
    ]  # fmt: skip
    # A rotation last written before --since holds no line after it.
    since = datetime(2026, 11, 22, 12, tzinfo=UTC)
    assert [path.name for path in with_rotations(log, since)] == ["auditgate_access.log.1", "auditgate_access.log"]


@pytest.mark.django_db
def test_audit_access_log_reads_every_log_it_is_given(tmp_path, make_event):
    make_event(request_id="aaaaaaaaaaaaaaaaaaaaaaa1")
    rotated, current = tmp_path / "access.log.2.gz", tmp_path / "access.log"
    write_log(rotated, LINES[:2], datetime(2026, 11, 24, 23, tzinfo=UTC))
    write_log(current, [LINES[1].replace("a2", "a4")], datetime(2026, 11, 25, tzinfo=UTC))
    out = StringIO()
    call_command("audit_access_log", "--log", str(rotated), "--log", str(current), "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert [r["request_id"] for r in report["requests"]] == ["aaaaaaaaaaaaaaaaaaaaaaa2", "aaaaaaaaaaaaaaaaaaaaaaa4"]


def test_audit_access_log_names_a_log_it_cannot_read(tmp_path):
    with pytest.raises(CommandError, match=r"Cannot read .*missing\.log: No such file"):
        call_command("audit_access_log", "--log", str(tmp_path / "missing.log"))


def logged(target: str, request_id: str = "-", status: int = 400) -> str:
    return f'127.0.0.1 - - [24/Nov/2026:22:58:26 +0000] "{target}" {status} 360 "-" "-" 50 {request_id}'


def test_a_request_is_placed_by_the_path_apache_routes_it_on():
    assert routed_path("https://gate.example/gw/crm/x#f") == "/gw/crm/x"
    assert routed_path("HTTP://gate.example:443/gw/crm/x?q=/../y") == "/gw/crm/x"
    assert routed_path("//gw//crm/x%00") == "/gw/crm/x\x00"
    assert routed_path("/%67w/crm/x") == "/gw/crm/x"
    assert routed_path("/api/../gw/crm/x") == "/gw/crm/x"
    assert routed_path("/gw/crm/..") == "/gw/"
    assert routed_path("/gw/") == "/gw/"
    # AllowEncodedSlashes NoDecode: Apache routes /gw%2Fcrm as it is, outside /gw/.
    assert routed_path("/gw%2Fcrm/x") == "/gw%2Fcrm/x"
    assert routed_path("*") == "*"


@pytest.mark.django_db
def test_gateway_requests_are_listed_whatever_form_their_target_was_sent_in():
    lines = [
        logged("GET https://gate.example/gw/crm/x#f HTTP/1.1", "aaaaaaaaaaaaaaaaaaaaaab1"),
        logged("GET //gw/crm/x%00 HTTP/1.1", "aaaaaaaaaaaaaaaaaaaaaab2", 404),
        logged("GET /%67w/crm/x HTTP/1.1\\n", "aaaaaaaaaaaaaaaaaaaaaab3"),
        logged("GET /gw%2Fcrm/x HTTP/1.1", "aaaaaaaaaaaaaaaaaaaaaab4", 404),
    ]
    assert [r.request_id[-2:] for r in unseen_by_django(parse(lines))] == ["b1", "b2", "b3"]


@pytest.mark.django_db
def test_a_logged_request_without_a_request_id_is_listed_not_skipped():
    lines = [logged("GET /gw/crm/x#f HTTP/1.1"), logged("\\x16\\x03")]
    assert [(r.path, r.request_id, r.status) for r in unseen_by_django(parse(lines))] == [("/gw/crm/x#f", None, 400)]


@pytest.mark.django_db
def test_audit_access_log_lists_requests_under_every_prefix_it_is_given(tmp_path):
    log = tmp_path / "access.log"
    write_log(
        log, [*LINES, logged("GET /admin/ HTTP/1.1", "aaaaaaaaaaaaaaaaaaaaaac1")], datetime(2026, 11, 25, tzinfo=UTC)
    )
    out = StringIO()
    call_command("audit_access_log", "--log", str(log), "--prefix", "/gw/", "--prefix", "/api/", "--json", stdout=out)
    assert [r["request_id"][-2:] for r in json.loads(out.getvalue())["requests"]] == ["a1", "a2", "a3"]
    out = StringIO()
    call_command("audit_access_log", "--log", str(log), stdout=out)
    assert out.getvalue().splitlines()[-1] == "never seen by Django: 2 {'200': 1, '504': 1}"
