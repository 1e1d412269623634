"""The receiver's check of a capture (apps.siem.capture): complete, intact, signed."""

from __future__ import annotations

import random
from datetime import timedelta

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from apps.audit import sealing
from apps.siem import syslog
from apps.siem.capture import verify_capture
from apps.siem.cursor import Position, next_batch
from tests.siem.conftest import now

KEYS = {"1": "k" * 32}
pytestmark = pytest.mark.usefixtures("signed")


@pytest.fixture
def signed():
    with override_settings(AUDIT_SEAL_KEYS=KEYS, AUDIT_SEAL_KEY_ID="1", AUDIT_CHECKPOINT_FILE=""):
        yield


@pytest.fixture
def streamed(event):
    """Events 1..9 (5 never committed) sealed in two checkpoints, as a sink sends them."""
    for seq in (1, 2, 3, 4, 6, 7, 8, 9):
        event(seq)
    sealing.seal(grace=timedelta(0), limit=4)
    sealing.seal(grace=timedelta(0))
    lines, position = [], Position(low_water=0)
    while (batch := next_batch(position, now=now(), grace=timedelta(seconds=5))).lines:
        lines.extend(batch.lines)
        position = batch.after
    assert [line.kind for line in lines].count("checkpoint") == 2
    return lines


def write(tmp_path, bodies: list[bytes], name: str = "capture.ndjson"):
    path = tmp_path / name
    path.write_bytes(b"".join(body + b"\n" for body in bodies))
    return path


def test_a_webhook_capture_in_any_order_with_duplicates_verifies(streamed, tmp_path):
    bodies = [line.body for line in streamed] + [streamed[0].body, streamed[3].body]
    random.Random(7).shuffle(bodies)  # noqa: S311 - an order, not a secret
    report = verify_capture([write(tmp_path, bodies)], keys=KEYS)
    assert report.ok, report.problems
    assert (report.events, report.duplicates, report.checkpoints, report.events_verified) == (8, 2, 2, 8)
    assert (report.first_seq, report.last_seq, report.signatures_checked) == (1, 9, True)


def test_a_syslog_capture_verifies_from_the_json_after_the_bom(streamed, tmp_path):
    messages = [syslog.message(line, facility=10, hostname="h", procid=1) for line in streamed]
    report = verify_capture([write(tmp_path, messages, "received.log")], keys=KEYS)
    assert report.ok, report.problems


def test_a_missing_event_a_changed_value_and_a_forged_checkpoint_are_named(streamed, tmp_path):
    bodies = {line.seq if line.kind == "event" else -line.seq: line.body for line in streamed}
    without = [b for seq, b in bodies.items() if seq != 3]
    assert "checkpoint 4: 1 events never arrived: 3" in verify_capture([write(tmp_path, without)]).problems
    changed = dict(bodies)
    changed[7] = orjson.dumps({**orjson.loads(changed[7]), "status": 204})
    problems = verify_capture([write(tmp_path, list(changed.values()))]).problems
    assert problems == ["checkpoint 9: the events 5..9 do not re-chain to its head hash"]
    forged = dict(bodies)
    forged[-9] = orjson.dumps({**orjson.loads(forged[-9]), "count": 5})
    problems = verify_capture([write(tmp_path, list(forged.values()))], keys=KEYS).problems
    assert problems == ["checkpoint 9: bad signature (key id '1')"]


def test_a_duplicate_that_differs_is_a_problem(streamed, tmp_path):
    body = streamed[0].body
    other = orjson.dumps({**orjson.loads(body), "path": "/elsewhere"})
    report = verify_capture([write(tmp_path, [line.body for line in streamed] + [other])])
    assert any("arrived twice with different contents" in p for p in report.problems)


def test_the_command_exits_1_on_a_bad_capture_and_compares_with_the_database(streamed, tmp_path, capsys):
    good = write(tmp_path, [line.body for line in streamed])
    call_command("siem_verify", str(good), "--database")
    assert "capture intact" in capsys.readouterr().out
    bad = write(tmp_path, [line.body for line in streamed if line.seq != 2], "bad.ndjson")
    with pytest.raises(CommandError):
        call_command("siem_verify", str(bad))
