"""The alerts API: ``/api/alerts/`` (auditors read) and ``/api/alerts/rules/`` (administrators
edit, auditors read; every change recorded in the trail like an access rule's).

Alerts and rules are about the whole trail: a token limited to some upstreams is refused
(403 ``token_scope``), as it is for ``/api/audit/verify``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.permissions import SAFE_METHODS, BasePermission

from apps.alerts.api.filtersets import AlertFilterSet, AlertRuleFilterSet
from apps.alerts.api.serializers import AlertRuleSerializer, AlertSerializer
from apps.alerts.models import Alert, AlertRule
from apps.audit import events
from apps.audit.choices import AUDIT_READ
from apps.audit.permissions import is_auditor
from apps.core.api.permissions import TokenScope, refuse, token_upstream_ids
from apps.core.pagination import CursorPagination
from apps.gateway import scopes as token_scopes
from apps.gateway.api.views import AuditedModelViewSet


class AuditorsReadAdminsWrite(BasePermission):
    message = "Auditors and administrators may read alerts; only administrators may change rules."

    def has_permission(self, request: Any, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return is_auditor(request.user)
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class WholeTrailOnly:
    """Refuses a token limited to some upstreams: alerts cover every upstream's events."""

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if token_upstream_ids(request) is not None:
            refuse(request, "Alerts cover every upstream's events: a token limited to some may not use them.")


class AlertPagination(CursorPagination):
    ordering = ("-fired_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


@extend_schema_view(
    list=extend_schema(summary="List alerts, newest first",
                       description="Filters: kind, rule, subject, delivered, fired_after, fired_before."),
    retrieve=extend_schema(summary="One alert"),
)  # fmt: skip
class AlertViewSet(WholeTrailOnly, viewsets.ReadOnlyModelViewSet):
    queryset = Alert.objects.all()
    serializer_class = AlertSerializer
    permission_classes = [AuditorsReadAdminsWrite, TokenScope]
    read_scope = AUDIT_READ
    filterset_class = AlertFilterSet
    pagination_class = AlertPagination
    lookup_value_regex = r"[0-9]+"


@extend_schema_view(
    list=extend_schema(summary="List alert rules"),
    retrieve=extend_schema(summary="One alert rule"),
    create=extend_schema(summary="Create an alert rule (administrators)"),
    update=extend_schema(summary="Replace an alert rule (administrators)"),
    partial_update=extend_schema(summary="Change an alert rule, e.g. enable or disable it (administrators)"),
    destroy=extend_schema(summary="Delete an alert rule (administrators); its alerts stay"),
)
class AlertRuleViewSet(WholeTrailOnly, AuditedModelViewSet):
    queryset = AlertRule.objects.all()
    serializer_class = AlertRuleSerializer
    permission_classes = [AuditorsReadAdminsWrite, TokenScope]
    read_scope, write_scope = AUDIT_READ, token_scopes.POLICY_WRITE
    filterset_class = AlertRuleFilterSet
    event_types = {"created": events.ALERT_RULE_CREATED, "updated": events.ALERT_RULE_UPDATED,
                   "deleted": events.ALERT_RULE_DELETED}  # fmt: skip
