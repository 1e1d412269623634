from __future__ import annotations

import ipaddress
import re
from datetime import timedelta

import django_filters
from django.db.models import Q, QuerySet
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from apps.audit.choices import Decision
from apps.audit.models import AuditEvent
from apps.core.filtersets import IntegerFilter, IsoDateTimeFilter, StrictFilterSet

# A CIDR filter becomes LIKE prefixes on the stored address text; beyond this many it is refused.
_MAX_PREFIXES = 256
# ``trace_id`` has no index: a search by it reads every event of its time window, which must be
# given and at most this long.  The events of one trace are seconds apart (a user's request and
# the calls made while serving it); an hour of 10 M events a day is about 0.4 M rows, read in
# under a second, where the whole table would take many.
TRACE_WINDOW = timedelta(hours=1)
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


def cidr_condition(value: str) -> Q:
    """``source_ip`` inside ``value`` (an address or an IPv4 CIDR), as index-friendly prefix matches."""
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValidationError({"client_ip": [f"{value!r} is not an IP address or CIDR."]}) from None
    if network.num_addresses == 1:
        return Q(source_ip=str(network.network_address))
    if network.version == 6:
        raise ValidationError({"client_ip": ["IPv6 ranges are not supported; give one address."]})
    octets = -(-network.prefixlen // 8)  # whole octets that the prefix touches
    subnets = list(network.subnets(new_prefix=octets * 8)) if network.prefixlen % 8 else [network]
    if len(subnets) > _MAX_PREFIXES or octets == 0:
        raise ValidationError({"client_ip": ["The range is too wide; use /8 or narrower."]})
    condition = Q()
    for subnet in subnets:
        prefix = ".".join(str(subnet.network_address).split(".")[:octets]) + "."
        # istartswith: LIKE under the column's collation can use the index (startswith is
        # LIKE BINARY on MariaDB, a full scan); addresses have no case to get wrong.
        condition |= Q(source_ip__istartswith=prefix)
    return condition


class AuditEventFilterSet(StrictFilterSet):
    event_type = django_filters.CharFilter(help_text="e.g. gateway.request, token.created (apps/audit/events.py).")
    actor = django_filters.CharFilter(field_name="actor_username", help_text="Username at the time of the event.")
    token_key_id = django_filters.CharFilter()
    upstream = django_filters.CharFilter(field_name="upstream_name")
    decision = django_filters.ChoiceFilter(choices=Decision.choices)
    reason = django_filters.CharFilter()
    status = IntegerFilter()
    status_min = IntegerFilter(field_name="status", lookup_expr="gte")
    status_max = IntegerFilter(field_name="status", lookup_expr="lte")
    client_ip = django_filters.CharFilter(method="filter_client_ip", help_text="An address or an IPv4 CIDR.")
    method = django_filters.CharFilter()
    request_id = django_filters.CharFilter(method="filter_request_id")
    trace_id = django_filters.CharFilter(
        method="filter_trace_id",
        help_text="W3C trace id (32 hex digits). Needs occurred_after, and occurred_before (default: now) at most "
        "an hour later: the column has no index.",
    )
    parent_event_id = IntegerFilter(help_text="The requests made while serving this event's request.")
    path_prefix = django_filters.CharFilter(method="filter_path_prefix")
    occurred_after = IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ("event_type", "actor", "token_key_id", "upstream", "decision", "reason", "status", "method",
                  "request_id", "trace_id", "parent_event_id")  # fmt: skip

    def filter_path_prefix(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        # The case-insensitive LIKE narrows through the index; the exact one keeps paths case-sensitive.
        return queryset.filter(path__istartswith=value).filter(path__startswith=value)

    def filter_request_id(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        return queryset.with_request_id(value)  # type: ignore[attr-defined]

    def filter_trace_id(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        if not _TRACE_ID.fullmatch(value.lower()):
            raise ValidationError({"trace_id": ["32 hexadecimal digits."]})
        after, before = self.form.cleaned_data.get("occurred_after"), self.form.cleaned_data.get("occurred_before")
        if after is None or (before or timezone.now()) - after > TRACE_WINDOW:
            raise ValidationError(
                {"trace_id": ["Give occurred_after, and occurred_before (default: now) at most an hour later."]}
            )
        return queryset.filter(trace_id=value.lower())

    def filter_client_ip(self, queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
        return queryset.filter(cidr_condition(value))
