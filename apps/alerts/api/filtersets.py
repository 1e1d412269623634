"""Query-string filters of the alerts API."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.alerts.models import Alert, AlertRule
from apps.core.filtersets import BooleanFilter, IntegerFilter, IsoDateTimeFilter, StrictFilterSet


class AlertFilterSet(StrictFilterSet):
    rule = IntegerFilter(field_name="rule_id")
    delivered = BooleanFilter(method="filter_delivered", help_text="Acknowledged by the webhook, or not yet.")
    fired_after = IsoDateTimeFilter(field_name="fired_at", lookup_expr="gte")
    fired_before = IsoDateTimeFilter(field_name="fired_at", lookup_expr="lt")

    class Meta:
        model = Alert
        fields = ("kind", "rule", "subject", "delivered", "fired_after", "fired_before")

    def filter_delivered(self, queryset: QuerySet[Alert], name: str, value: bool | None) -> QuerySet[Alert]:
        return queryset if value is None else queryset.filter(delivered_at__isnull=not value)


class AlertRuleFilterSet(StrictFilterSet):
    class Meta:
        model = AlertRule
        fields = ("kind", "enabled", "name")
