"""The streamer's loop: durable cursor, retries, one streamer per sink (apps.siem.streaming)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from apps.siem.models import SinkCursor
from apps.siem.sinks import DeliveryFailed
from apps.siem.streaming import Busy, Options, Streamer, sink_lock
from tests.siem.conftest import FakeSink

OPTIONS = Options(grace=timedelta(seconds=5))


def streamer(sink, name="test-sink") -> Streamer:
    return Streamer(name, sink, OPTIONS, sleep=lambda seconds: None)


def test_a_restarted_streamer_resumes_from_the_durable_cursor(event):
    for seq in (1, 2, 3):
        event(seq)
    first = FakeSink()
    streamer(first).run(seconds=5, once=True)
    assert first.seqs() == [1, 2, 3]
    event(4)
    event(5)
    again = FakeSink()
    streamer(again).run(seconds=5, once=True)
    assert again.seqs() == [4, 5], "nothing sent twice, nothing skipped"
    cursor = SinkCursor.objects.get(name="test-sink")
    assert (cursor.low_water, cursor.events_sent, cursor.last_error) == (5, 5, "")
    assert cursor.last_lag_seconds is not None and cursor.last_sent_at is not None


def test_a_failed_delivery_leaves_the_cursor_and_the_same_lines_go_again(event):
    event(1)
    event(2)
    sink = FakeSink()
    sink.failures = 2
    runner = streamer(sink)
    with runner.lock.holding(wait=0):
        cursor = runner._cursor()
        assert runner.step(cursor) is None and runner.step(cursor) is None
        assert SinkCursor.objects.get(name="test-sink").low_water == 0
        assert "receiver down" in SinkCursor.objects.get(name="test-sink").last_error
        assert runner.step(cursor) == 2
    assert sink.seqs() == [1, 2]
    assert SinkCursor.objects.get(name="test-sink").low_water == 2


def test_the_backoff_doubles_up_to_its_cap(db):
    runner = streamer(FakeSink())
    cursor = SinkCursor(name="x", kind="syslog")
    cursor.save()
    waits = []
    for _ in range(9):
        runner._failed(cursor, DeliveryFailed("down"))
        waits.append(runner._backoff)
    assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_a_second_streamer_for_the_same_sink_stands_aside(event):
    from django.db import connections

    rival = connections.create_connection("default")  # another process, or another host
    try:
        assert replace(sink_lock("test-sink"), connection=rival).take(wait=0)
        with pytest.raises(Busy):
            streamer(FakeSink()).run(seconds=1, once=True)
    finally:
        rival.close()  # the lock dies with its session
    event(1)
    sink = FakeSink()
    streamer(sink).run(seconds=1, once=True)
    assert sink.seqs() == [1]


def test_a_cursor_of_another_kind_is_refused(event):
    SinkCursor.objects.create(name="test-sink", kind="webhook")
    with pytest.raises(ValueError, match="webhook"):
        streamer(FakeSink()).run(seconds=1, once=True)


def test_the_command_shows_and_forgets_cursors(event, capsys):
    import json

    from django.core.management import call_command

    event(1)
    streamer(FakeSink()).run(seconds=1, once=True)
    call_command("audit_stream", "--status")
    [shown] = json.loads(capsys.readouterr().out)
    assert (shown["name"], shown["kind"], shown["low_water"], shown["events_sent"]) == ("test-sink", "syslog", 1, 1)
    call_command("audit_stream", "--sink", "syslog", "--cursor", "test-sink", "--forget")
    assert not SinkCursor.objects.exists()


def test_a_sink_without_its_url_is_a_configuration_error(db, settings):
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import call_command

    settings.SIEM_WEBHOOK_URL = ""
    with pytest.raises(ImproperlyConfigured, match="AUDITGATE_SIEM_WEBHOOK_URL"):
        call_command("audit_stream", "--sink", "webhook", "--once")
