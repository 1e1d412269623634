"""Serializers the site-level API shares with the apps' APIs (for their OpenAPI schema)."""

from __future__ import annotations

from rest_framework import serializers


class ReplicaHealthSerializer(serializers.Serializer):
    """The read replica's health (``apps.core.replica``): in ``/api/health/`` and the audit stats."""

    state = serializers.ChoiceField(
        choices=("ok", "lagging", "down"),
        help_text="ok: read from; lagging: further behind than the allowed lag; down: unreachable or not replicating.",
    )
    lag_seconds = serializers.IntegerField(allow_null=True, help_text="Seconds_Behind_Master; null when unknown.")
