"""The one table of refusals (apps.core.refusals) against everything that names a code:
the gateway's vocabularies, the README's table of gateway refusals, Apache's error bodies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from apps.core.refusals import REFUSALS
from apps.gateway.choices import Reason, UpstreamError

ROOT = Path(__file__).resolve().parents[2]
# A code whose status depends on where it is refused (README: 403 from a rule, 405 otherwise).
TWO_STATUSES = {"method_not_allowed": {403, 405}}


def statuses(code: str) -> set[int]:
    return TWO_STATUSES.get(code, {REFUSALS[code].status})


@pytest.mark.parametrize("code", [*Reason.values, *UpstreamError.values])
def test_every_code_the_gateway_records_has_its_row(code):
    if code == Reason.ALLOWED:
        return
    assert code in REFUSALS


def readme_gateway_refusals() -> list[tuple[int, str]]:
    text = (ROOT / "README.md").read_text()
    table = text.split("Gateway refusals, with their `code`:", 1)[1].split("\n\n", 2)[1]
    rows = []
    for line in table.splitlines()[2:]:
        status, codes = line.split("|")[1:3]
        rows.extend((int(status), code) for code in re.findall(r"`([a-z_]+)`", codes) if code in REFUSALS)
    return rows


def test_the_readme_table_of_gateway_refusals_agrees_with_the_table():
    rows = readme_gateway_refusals()
    assert len(rows) > 25
    for status, code in rows:
        assert status in statuses(code), (status, code)


@pytest.mark.parametrize("path", sorted((ROOT / "apache" / "errors").glob("*.json")), ids=lambda p: p.name)
def test_what_apache_answers_itself_is_in_the_table_with_the_same_status(path):
    code = json.loads(re.sub(r"<!--#echo [^>]*-->", "x", path.read_text()))["code"]
    assert int(path.stem) in statuses(code), code
