from __future__ import annotations

from django.db import models


class SinkCursor(models.Model):
    """How far one sink has streamed the audit trail (``apps.siem.cursor``), durable across restarts.

    ``low_water``: every id up to it was sent, or is known never to exist.  ``done``: the ranges
    above it that are done too (``[[lo, hi], ...]``, sorted, disjoint, never touching): events that
    completed and went out while an older attempt was still open.  ``assumed_gaps``: ids taken
    for rolled-back inserts because a later row was recorded longer than the grace ago; a
    checkpoint that says otherwise sends them late, before itself.  ``checkpoint_through``: the
    ``last_seq`` of the last checkpoint sent."""

    name = models.CharField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, help_text="syslog or webhook")
    low_water = models.BigIntegerField(default=0)
    done = models.JSONField(default=list, blank=True)
    assumed_gaps = models.JSONField(default=list, blank=True)
    checkpoint_through = models.BigIntegerField(default=0)
    events_sent = models.PositiveBigIntegerField(default=0)
    checkpoints_sent = models.PositiveBigIntegerField(default=0)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    # Seconds from the last sent event's completion to its acknowledgement by the receiver.
    last_lag_seconds = models.FloatField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}): through {self.low_water}"
