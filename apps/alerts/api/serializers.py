from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.alerts import choices
from apps.alerts.choices import Kind
from apps.alerts.models import Alert, AlertRule

MAX_THRESHOLD = 10_000
MAX_WINDOW_MINUTES = 7 * 24 * 60


class AlertRuleSerializer(serializers.HyperlinkedModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="alerts-api:alertrule-detail")

    class Meta:
        model = AlertRule
        fields = ("url", "id", "name", "kind", "threshold", "window_minutes", "grouping", "enabled",
                  "created_at", "updated_at")  # fmt: skip
        read_only_fields = ("created_at", "updated_at")
        # Bounds that keep every rule evaluable: a count reads at most ``threshold`` rows, and a
        # window is a time span the database and Python can both compute.
        extra_kwargs = {
            "threshold": {"min_value": 1, "max_value": MAX_THRESHOLD},
            "window_minutes": {"max_value": MAX_WINDOW_MINUTES},
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Each kind takes the fields it uses, and only those (a rule that cannot fire is refused)."""
        merged = {**self._current(), **attrs}
        kind, grouping = merged.get("kind"), merged.get("grouping", "")
        if kind == Kind.DENIALS:
            if not grouping:
                raise serializers.ValidationError(
                    {"grouping": ["Denials are counted per actor or per token."]}, code=choices.GROUPING_REQUIRED
                )
        elif grouping:
            raise serializers.ValidationError(
                {"grouping": ["Only denials rules are grouped."]}, code=choices.GROUPING_NOT_ALLOWED
            )
        if kind in (Kind.DENIALS, Kind.SEALING_STALLED) and merged.get("window_minutes", 0) < 1:
            raise serializers.ValidationError(
                {"window_minutes": ["This kind needs a window (denials) or a bound (sealing) of 1+ minutes."]},
                code=choices.WINDOW_REQUIRED,
            )
        return attrs

    def _current(self) -> dict[str, Any]:
        rule = self.instance
        if not isinstance(rule, AlertRule):
            return {}
        return {name: getattr(rule, name) for name in ("kind", "grouping", "threshold", "window_minutes")}


class AlertSerializer(serializers.HyperlinkedModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="alerts-api:alert-detail")
    rule: serializers.PrimaryKeyRelatedField = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="Null once the rule is deleted."
    )
    delivered = serializers.SerializerMethodField(help_text="Acknowledged (2xx) by the webhook.")

    class Meta:
        model = Alert
        fields = ("url", "id", "rule", "rule_name", "kind", "fired_at", "subject", "detail", "event_ids",
                  "delivered", "delivered_at", "attempts", "last_error", "next_attempt_at")  # fmt: skip
        read_only_fields = fields

    def get_delivered(self, alert: Alert) -> bool:
        return alert.delivered_at is not None
