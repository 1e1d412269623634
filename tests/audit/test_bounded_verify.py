"""Verifying a page of the trail at a time: what a web request may do at any trail size.

Every checkpoint's link is checked on every page; the events are re-hashed a whole segment
at a time from ``from_seq``; ``next`` goes on; the whole trail's last host verification
(``audit_verify``) is reported with each page; each walk is in the trail itself.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.audit import events as event_types
from apps.audit import sealing
from apps.audit.models import AuditEvent, AuditSeal
from tests.audit.seals import LONG_AGO

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seal_settings")]


@pytest.fixture
def events(make_event):
    """Fifteen events written an hour ago, sealed in three checkpoints of five."""
    made = [make_event(request_id=f"r{i}", path=f"/p{i}", recorded_at=LONG_AGO) for i in range(15)]
    for _ in range(3):
        assert sealing.seal(limit=5).count == 5
    return made


@pytest.fixture
def auditor(client_for, make_user):
    return client_for(make_user(username="ann-auditor", groups=("auditor",)))


def tamper(event: AuditEvent) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET status = 599 WHERE id = %s", [event.id])


def walked(report: sealing.Report) -> tuple:
    return report.events_checked, report.from_seq, report.through_seq, report.complete


def test_a_bounded_walk_stops_after_the_segment_that_reaches_its_budget(events):
    assert walked(sealing.verify(max_events=3)) == (5, events[0].id, events[4].id, False)
    assert walked(sealing.verify(max_events=6)) == (10, events[0].id, events[9].id, False)
    assert walked(sealing.verify(max_events=15)) == (15, events[0].id, events[14].id, True)
    assert walked(sealing.verify()) == (15, events[0].id, events[14].id, True)


def test_a_walk_starts_at_the_segment_holding_from_seq(events):
    # From the middle of the second segment: the whole of it is re-hashed (it re-chains from
    # its own checkpoint), and the first one is not.
    report = sealing.verify(from_seq=events[7].id, max_events=1)
    assert walked(report) == (5, events[5].id, events[9].id, False)
    assert walked(sealing.verify(from_seq=events[14].id + 1)) == (0, None, None, True)


def test_every_page_checks_every_checkpoints_link(events):
    AuditSeal.objects.filter(first_seq=events[10].id).update(prev_hash="ab" * 32)
    report = sealing.verify(max_events=1)  # re-hashes the first segment only
    assert report.segments_checked == 3
    assert [(p.kind, p.seq) for p in report.problems] == [("fork", events[10].id)]


def test_an_edit_is_found_by_the_page_that_re_hashes_it(events):
    tamper(events[12])
    assert sealing.verify(max_events=5).ok
    later = sealing.verify(from_seq=events[10].id, max_events=5)
    assert (later.ok, later.first_bad_seq) == (False, events[12].id)


def test_the_api_walks_the_trail_a_page_at_a_time_through_next(events, auditor):
    page = auditor.get("/api/audit/verify", {"max_events": 5}).json()
    pages = [page]
    while page["next"]:
        query = parse_qs(urlsplit(page["next"]).query)
        assert query["max_events"] == ["5"]
        page = auditor.get("/api/audit/verify", {k: v[0] for k, v in query.items()}).json()
        pages.append(page)
    assert [(p["from_seq"], p["through_seq"], p["complete"]) for p in pages] == [
        (events[0].id, events[4].id, False),
        (events[5].id, events[9].id, False),
        (events[10].id, events[14].id, True),
    ]
    assert sum(p["events_checked"] for p in pages) == 15
    assert all(p["ok"] and p["segments_checked"] == 3 for p in pages)


def test_the_api_finds_an_edit_on_its_page_and_says_where_the_walk_goes_on(events, auditor):
    tamper(events[6])
    first = auditor.get("/api/audit/verify", {"max_events": 5}).json()
    assert first["ok"]
    assert parse_qs(urlsplit(first["next"]).query) == {"from_seq": [str(events[5].id)], "max_events": ["5"]}
    second = auditor.get("/api/audit/verify", {"from_seq": events[5].id, "max_events": 5}).json()
    assert (second["ok"], second["first_bad_seq"]) == (False, events[6].id)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from_seq": "0"}, "from_seq"),
        ({"from_seq": "x"}, "from_seq"),
        ({"from_seq": str(2**63)}, "from_seq"),
        ({"max_events": "0"}, "max_events"),
        ({"max_events": "250001"}, "max_events"),
        ({"max_events": "1e9"}, "max_events"),
    ],
)
def test_the_api_refuses_a_walk_it_cannot_do_with_a_400(events, auditor, query, field):
    response = auditor.get("/api/audit/verify", query)
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert field in response.json()["errors"]


def test_each_walk_is_in_the_trail_with_what_it_covered(events, auditor):
    tamper(events[1])
    auditor.get("/api/audit/verify", {"max_events": 5})
    auditor.get("/api/audit/verify", {"from_seq": events[5].id})
    walks = AuditEvent.objects.filter(event_type=event_types.AUDIT_VERIFIED).order_by("id")
    assert [(e.actor_username, e.object_id, e.object_repr, e.reason) for e in walks] == [
        ("ann-auditor", "range", f"seq {events[0].id}..{events[4].id}", "not_intact"),
        ("ann-auditor", "range", f"seq {events[5].id}..{events[14].id}", "ok"),
    ]


def test_each_page_says_when_the_host_last_verified_the_whole_trail(events, auditor):
    assert auditor.get("/api/audit/verify").json()["last_full_verification"] is None
    call_command("audit_verify", "--no-progress")
    last = auditor.get("/api/audit/verify", {"max_events": 1}).json()["last_full_verification"]
    recorded = AuditEvent.objects.get(event_type=event_types.AUDIT_VERIFIED, object_id="full")
    assert (recorded.user_agent, recorded.auth_method) == ("manage.py audit_verify", "command")
    assert last == {
        "event_id": recorded.id,
        "at": recorded.occurred_at.isoformat(),
        "ok": True,
        "by": recorded.actor_username,
        "from_seq": events[0].id,
        "through_seq": events[14].id,
    }
    assert last["by"]  # the host account that ran it
    tamper(events[3])
    with pytest.raises(CommandError):
        call_command("audit_verify", "--no-progress")
    assert auditor.get("/api/audit/verify", {"max_events": 1}).json()["last_full_verification"]["ok"] is False
