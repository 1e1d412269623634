from rest_framework import viewsets
from rest_framework.pagination import CursorPagination

from apps.audit.api.serializers import AuditEventSerializer
from apps.audit.filtersets import AuditEventFilterSet
from apps.audit.models import AuditEvent
from apps.audit.permissions import IsAuditor


class AuditEventPagination(CursorPagination):
    # Cursor pagination: constant cost per page at any table size (no OFFSET, no COUNT).
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail: one event per gateway attempt, newest first. Read-only."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    permission_classes = [IsAuditor]
    pagination_class = AuditEventPagination
    filterset_class = AuditEventFilterSet
