"""What a sink sends next and where its cursor stands (apps.siem.cursor)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from apps.audit import sealing
from apps.siem.cursor import Position, next_batch, start_position
from apps.siem.lines import CHECKPOINT
from tests.siem.conftest import complete, now

GRACE = timedelta(seconds=5)


def batch(position: Position, **options):
    return next_batch(position, now=now(), grace=GRACE, **options)


def sent(b) -> list[int]:
    return [line.seq for line in b.lines if line.kind == "event"]


def test_complete_events_go_out_in_id_order_and_the_low_water_follows(event):
    for seq in (1, 2, 3):
        event(seq)
    b = batch(Position(low_water=0))
    assert sent(b) == [1, 2, 3]
    assert (b.after.low_water, b.after.done) == (3, [])
    assert batch(b.after).lines == []


def test_an_open_attempt_holds_the_low_water_but_not_the_events_after_it(event):
    event(1)
    event(2, complete=False)
    event(3)
    event(4)
    b = batch(Position(low_water=0))
    assert sent(b) == [1, 3, 4]
    assert (b.after.low_water, b.after.done) == (1, [[3, 4]])
    complete(2)
    b = batch(b.after)
    assert sent(b) == [2]
    assert (b.after.low_water, b.after.done) == (4, [])


def test_a_missing_id_is_pending_until_a_later_row_is_older_than_the_grace(event):
    event(1)
    event(3, age=1)  # 2 was allocated, and may still commit
    b = batch(Position(low_water=0))
    assert sent(b) == [1, 3]
    assert (b.after.low_water, b.after.done, b.after.assumed_gaps) == (1, [[3, 3]], [])
    event(4, age=30)  # a row after 2, recorded long ago: 2 had its grace
    b = batch(b.after)
    assert sent(b) == [4]
    assert (b.after.low_water, b.after.done, b.after.assumed_gaps) == (4, [], [[2, 2]])


def test_an_id_assumed_a_gap_that_turns_up_late_is_sent_then(event):
    event(1)
    event(3)
    b = batch(Position(low_water=0))
    assert b.after.assumed_gaps == [[2, 2]]
    event(2)  # committed after all (a clock ahead, a very slow transaction)
    b = batch(b.after)
    assert sent(b) == [2]
    assert b.after.assumed_gaps == []


def test_a_late_id_still_open_waits_for_its_outcome(event):
    event(1)
    event(3)
    b = batch(Position(low_water=0))
    event(2, complete=False)
    b = batch(b.after)
    assert sent(b) == [] and b.after.assumed_gaps == [[2, 2]]
    complete(2)
    assert sent(batch(b.after)) == [2]


@override_settings(AUDIT_SEAL_KEYS={"1": "k" * 32}, AUDIT_SEAL_KEY_ID="1", AUDIT_CHECKPOINT_FILE="")
def test_a_checkpoint_goes_out_after_every_event_it_covers_in_seal_order(event):
    event(1)
    event(2, complete=False)
    event(3)
    first = sealing.seal(grace=timedelta(0))  # seals 1 only: 2 is open
    complete(2)
    b = batch(Position(low_water=0), max_lines=1)
    assert [(line.kind, line.seq) for line in b.lines] == [("event", 1), (CHECKPOINT, first.last_seq)]
    second = sealing.seal(grace=timedelta(0))
    b = batch(b.after)
    assert [(line.kind, line.seq) for line in b.lines] == [("event", 2), ("event", 3), (CHECKPOINT, second.last_seq)]
    assert b.lines[-1].fields["head_hash"] == second.head_hash and b.lines[-1].fields["signature"]
    assert b.after.checkpoint_through == 3


@override_settings(AUDIT_SEAL_KEYS={}, AUDIT_SEAL_KEY_ID="", AUDIT_CHECKPOINT_FILE="")
def test_an_assumed_gap_a_checkpoint_holds_is_sent_before_the_checkpoint(event, monkeypatch):
    event(1)
    event(3)
    b = batch(Position(low_water=0))
    assert b.after.assumed_gaps == [[2, 2]]
    event(2)
    # The late-event check missed it (say the row was not visible yet): the checkpoint still owes it.
    monkeypatch.setattr("apps.siem.cursor._late_events", lambda assumed: ([], assumed))
    sealing.seal(grace=timedelta(0))
    b = batch(b.after)
    assert [(line.kind, line.seq) for line in b.lines] == [("event", 2), (CHECKPOINT, 3)]
    assert b.after.assumed_gaps == []


@override_settings(AUDIT_SEAL_KEYS={}, AUDIT_SEAL_KEY_ID="", AUDIT_CHECKPOINT_FILE="")
def test_a_new_cursor_starts_after_the_last_checkpoint_or_whole_checkpoints_back(event):
    assert start_position() == Position(low_water=0)
    event(1)
    sealing.seal(grace=timedelta(0))
    event(2)
    event(3)
    sealing.seal(grace=timedelta(0))
    assert start_position() == Position(low_water=3, checkpoint_through=3)
    assert start_position(1) == Position(low_water=1, checkpoint_through=1)
    assert start_position(5) == Position(low_water=0, checkpoint_through=0)


def test_a_batch_stops_at_its_size_in_lines_and_bytes(event):
    for seq in range(1, 11):
        event(seq)
    b = batch(Position(low_water=0), max_lines=4)
    assert sent(b) == [1, 2, 3, 4] and b.after.low_water == 4
    size = len(b.lines[0].body) + 1
    b = batch(b.after, max_bytes=size * 2 + 1)
    assert sent(b) == [5, 6] and b.after.low_water == 6
    b = batch(b.after, max_bytes=1)
    assert sent(b) == [7], "at least one line goes, however long"


@pytest.mark.parametrize("open_attempts", [1, 30])
def test_many_events_after_open_attempts_stay_compact(event, open_attempts):
    seq = 0
    for _ in range(open_attempts):
        seq += 1
        event(seq, complete=False)
        for _ in range(3):
            seq += 1
            event(seq)
    position = Position(low_water=0)
    while (b := batch(position, max_lines=7)).lines:
        position = b.after
    assert position.low_water == 0
    assert len(position.done) == open_attempts
