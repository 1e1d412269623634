"""Schemathesis hooks for the contract fuzzing of a deployed auditgate (``SCHEMATHESIS_HOOKS``).

The fuzzer runs as an administrator against a real deployment, where revoking, changing or
deleting an object that existed before the run would break the deployment (the admin's own
token, the operator's upstreams).  Objects named in ``AUDITGATE_FUZZ_PROTECTED``
(``tokens:1,2;upstreams:3;rules:``) are therefore never the target of a write: such a
request goes to an id that does not exist instead (and gets its 404).  Objects the fuzzer
creates itself are fair game, so the stateful links (create, read, change, delete) still
run end to end.

The fuzzer is also pointed at the inputs its defaults never reach (each was a 500 that
0 failures had hidden, issue 12):

- date-times near the ends of the calendar with time-zone offsets: its own ``date-time``
  values are spread over ten thousand years, so one within a day of year 1 or 9999 with an
  offset pushing it over the edge practically never came up;
- tampered cursors: base64 of a position that is not a date (or overflows), beside garbage;
  a random string is almost never valid base64 of ``p=...``;
- JSON nested 10,000 levels deep: generated bodies are only as deep as the schema.

``before_add_examples`` adds a few fixed cases of each kind to every operation (each alone in
its request); the ``date-time`` strategy and ``flatmap_query`` mix such values into the
random cases.

And one bound, for time's sake only: the deployed trail grows with every run of the suite on
a machine (757,000 events on the CI machine once), and an unfiltered export streams all of it
(300 MB, 11 s a call), which the fuzzer's coverage phase asks for dozens of times.  A read of
the trail (list or export) that names no ``occurred_after`` gets one an hour back, added by
``before_call``; a value the fuzzer chose, valid or not, is left as it is, so every check still
sees what the schema allows and refuses.

Nothing else about a request or the checks is changed.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import schemathesis
from hypothesis import strategies as st

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TRAIL_READS = frozenset({"/api/audit/events/", "/api/audit/events/export/"})
RECENT = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
NO_SUCH_ID = "2147483000"


def protected() -> dict[str, set[str]]:
    spec = os.environ.get("AUDITGATE_FUZZ_PROTECTED", "")
    kinds = (part.partition(":") for part in spec.split(";") if part)
    return {kind: {ident for ident in ids.split(",") if ident} for kind, _, ids in kinds}


PROTECTED = protected()


# The schema's date-time values, with two more kinds beside the fuzzer's own (which spread over ten
# thousand years and never come near the ends): values that leave Python's calendar once turned
# into UTC, and values within a day of its ends, with offsets up to the farthest time zones.
OFFSETS = ("Z", "+00:00", "+01:00", "-01:00", "+14:00", "-12:00", "+05:30", "+23:59", "-23:59")


def render(moment: datetime, offset: str) -> str:
    return moment.isoformat() + offset  # isoformat: year 1 is "0001" (strftime's %Y says "1")


minutes_and_seconds = (st.integers(0, 59), st.integers(0, 59))
before_year_1_in_utc = st.builds(
    render, st.builds(datetime, st.just(1), st.just(1), st.just(1), st.just(0), *minutes_and_seconds),
    st.sampled_from(["+01:00", "+14:00", "+23:59"]),
)  # fmt: skip
after_year_9999_in_utc = st.builds(
    render, st.builds(datetime, st.just(9999), st.just(12), st.just(31), st.just(23), *minutes_and_seconds),
    st.sampled_from(["-01:00", "-12:00", "-23:59"]),
)  # fmt: skip
near_the_ends = st.builds(
    render,
    st.builds(datetime.combine, st.sampled_from([date(1, 1, 1), date(1, 1, 2), date(9999, 12, 30),
                                                 date(9999, 12, 31)]), st.times()),
    st.sampled_from(OFFSETS),
)  # fmt: skip
date_times = st.one_of(
    st.builds(render, st.datetimes(), st.sampled_from(OFFSETS)), before_year_1_in_utc, after_year_9999_in_utc,
    near_the_ends,
)  # fmt: skip
schemathesis.openapi.format("date-time", date_times)


def encode_cursor(fields: dict[str, str]) -> str:
    return base64.b64encode(urlencode(fields).encode()).decode()


tampered_cursors = st.one_of(
    st.builds(lambda p, r: encode_cursor({"p": p, **({"r": "1"} if r else {})}), st.one_of(date_times, st.text()),
              st.booleans()),
    st.dictionaries(st.sampled_from(["o", "r", "p", "x"]), st.text(max_size=8)).map(encode_cursor),
    st.text(max_size=40),
)  # fmt: skip


@schemathesis.hook
def flatmap_query(ctx: Any, query: Any) -> Any:
    """A cursor the fuzzer sends is a tampered one (the schema can only say "a string", and a
    random string is almost never base64 of ``p=...``); the API's own cursors are followed by
    the existing tests."""
    if not isinstance(query, dict) or "cursor" not in query:
        return st.just(query)
    return tampered_cursors.map(lambda cursor: {**query, "cursor": cursor})


# Sent as bytes: the fuzzer's own encoder would recurse too deep to write it.
DEEP_JSON = b"[" * 10_000 + b"]" * 10_000
OVERFLOWING_DATE_TIMES = ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z")
TAMPERED_CURSORS = (encode_cursor({"p": "not-a-date"}), encode_cursor({"p": "9999-12-31 23:59:59-01:00"}), "%%%%")


@schemathesis.hook
def before_add_examples(ctx: Any, examples: list[Any]) -> None:
    """A few fixed hostile cases per operation, each alone in its request: among random values,
    an overflowing date or a tampered cursor is rare, and another invalid parameter of the same
    request (a page_size of 0) gets it refused before it is read."""
    operation = ctx.operation
    for parameter in operation.definition.raw.get("parameters", []):
        if parameter.get("in") == "query" and parameter.get("schema", {}).get("format") == "date-time":
            examples += [operation.Case(query={parameter["name"]: value}) for value in OVERFLOWING_DATE_TIMES]
        elif parameter.get("in") == "query" and parameter["name"] == "cursor":
            examples += [operation.Case(query={"cursor": value}) for value in TAMPERED_CURSORS]
    json_body = "application/json" in operation.definition.raw.get("requestBody", {}).get("content", {})
    if json_body and "{" not in operation.path:  # an operation on one object answers 404 first
        examples.append(operation.Case(body=DEEP_JSON, media_type="application/json"))


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    if case.method.upper() == "GET" and case.path in TRAIL_READS and isinstance(case.query or {}, dict):
        case.query = {"occurred_after": RECENT, **(case.query or {})}
    if case.method.upper() not in WRITES or not case.path_parameters:
        return
    kind = case.path.strip("/").split("/")[1] if case.path.startswith("/api/") else ""
    ident = str(case.path_parameters.get("id", ""))
    if ident in PROTECTED.get(kind, ()):
        case.path_parameters["id"] = NO_SUCH_ID
