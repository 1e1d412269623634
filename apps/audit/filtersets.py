import django_filters

from apps.audit.models import AuditEvent, Decision


class AuditEventFilterSet(django_filters.FilterSet):
    event_type = django_filters.CharFilter(help_text="e.g. gateway.request, token.created (apps/audit/events.py).")
    actor = django_filters.CharFilter(field_name="actor_username", help_text="Username at the time of the event.")
    upstream = django_filters.CharFilter(field_name="upstream_name")
    decision = django_filters.ChoiceFilter(choices=Decision.choices)
    status = django_filters.NumberFilter()
    reason = django_filters.CharFilter()
    method = django_filters.CharFilter()
    request_id = django_filters.CharFilter()
    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ("event_type", "actor", "upstream", "decision", "status", "reason", "method", "request_id")
