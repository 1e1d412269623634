"""Cursor pages refuse any cursor and page size the API did not hand out (``apps.core.pagination``)."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest

pytestmark = pytest.mark.django_db


def cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def auditor(client_for, make_user, make_event):
    for i in range(3):
        make_event(request_id=f"r{i}")
    api = client_for(make_user(groups=("auditor",)))
    api.raise_request_exception = False  # a bug answers 500, as deployed, instead of raising here
    return api


@pytest.mark.parametrize(
    "tampered",
    [
        cursor("p=not-a-date"),  # a position that is not a date: was a 500
        cursor("p=0001-01-01 00:00:00-01:00"),  # a date that overflows in UTC: was a 500
        cursor("p=9999-12-31 23:59:59-01:00&r=1"),
        cursor("p=2026-13-45 99:99:99+00:00"),
        cursor("o=-1"),  # was DRF's 404
        cursor("r=x"),
        "%%%%",  # not base64: was read as no cursor, the first page
        "cD0yMDI2LTAxLTAx!!",  # base64 with garbage after it: the garbage was skipped
        cursor("x=1"),  # keys a cursor never has: were ignored
        cursor("p=2026-01-01 00:00:00+00:00&p=2027-01-01 00:00:00+00:00"),
        "w6k=",  # base64 of text that is not ASCII
        "ÿ",
    ],
)
def test_a_tampered_cursor_is_a_400_with_a_code(auditor, tampered):
    response = auditor.get("/api/audit/events/", {"cursor": tampered})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_cursor"
    assert response.json()["request_id"] == response["X-Request-ID"]


def test_the_cursors_the_api_hands_out_still_page_both_ways(auditor):
    first = auditor.get("/api/audit/events/", {"page_size": 2, "event_type": "gateway.request"}).json()
    cursor_of_next = parse_qs(urlsplit(first["next"]).query)["cursor"][0]
    second = auditor.get("/api/audit/events/", {"page_size": 2, "event_type": "gateway.request",
                                                "cursor": cursor_of_next})  # fmt: skip
    assert second.status_code == 200
    assert [e["request_id"] for e in second.json()["results"]] == ["r0"]
    back = auditor.get(second.json()["previous"])
    assert [e["request_id"] for e in back.json()["results"]] == ["r2", "r1"]


def test_an_empty_cursor_is_no_cursor(auditor):
    assert auditor.get("/api/audit/events/", {"cursor": ""}).status_code == 200


# str.isdigit() takes them all; int() refuses "²" and 5,000 digits (a 500) and reads "٣" as 3.
@pytest.mark.parametrize("size", ["²", "٣", "9" * 5000])
def test_a_page_size_that_is_not_a_plain_number_in_range_is_a_400(auditor, size):
    response = auditor.get("/api/audit/events/", {"page_size": size})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert "page_size" in response.json()["errors"]
