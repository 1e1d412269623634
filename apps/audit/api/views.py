from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit import events, exporting, sealing, stats
from apps.audit.api.serializers import AuditEventSerializer
from apps.audit.filtersets import AuditEventFilterSet
from apps.audit.models import AuditEvent
from apps.audit.permissions import IsAuditor, is_auditor


class AuditEventPagination(CursorPagination):
    # Cursor pagination: constant cost per page at any table size (no OFFSET, no COUNT),
    # newest first by (occurred_at, seq); every filter has an index (filter column, time).
    ordering = ("-occurred_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class CSVRenderer(BaseRenderer):
    """Lets ``?format=csv`` through content negotiation; the export streams its own body."""

    media_type = "text/csv"
    format = "csv"


class NDJSONRenderer(BaseRenderer):
    media_type = "application/x-ndjson"
    format = "ndjson"


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail, newest first. Read-only; reading it is itself audited."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[AuditEvent]:
        # Auditors and admins read everything; everyone else only their own events.
        if is_auditor(self.request.user):
            return AuditEvent.objects.all()
        return AuditEvent.objects.filter(actor_id=self.request.user.pk)

    def list(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)  # the page first: it need not show its own read
        events.record(events.AUDIT_VIEWED, request=request, query=request.META.get("QUERY_STRING", "")[:2000])
        return response

    def retrieve(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        response = super().retrieve(request, *args, **kwargs)
        events.record(events.AUDIT_VIEWED, request=request, object_type="audit.auditevent",
                      object_id=str(kwargs.get("pk", "")))  # fmt: skip
        return response

    @action(detail=False, renderer_classes=[CSVRenderer, NDJSONRenderer, JSONRenderer])
    def export(self, request: Any) -> StreamingHttpResponse:
        """The filtered events as CSV (default) or NDJSON (``?format=ndjson``), streamed."""
        kind = "ndjson" if request.accepted_renderer.format == "ndjson" else "csv"
        queryset = self.filter_queryset(self.get_queryset())
        events.record(events.AUDIT_EXPORTED, request=request, query=request.META.get("QUERY_STRING", "")[:2000])
        lines = exporting.ndjson_lines(queryset) if kind == "ndjson" else exporting.csv_lines(queryset)
        response = StreamingHttpResponse(lines, content_type=CSVRenderer.media_type if kind == "csv"
                                         else NDJSONRenderer.media_type)  # fmt: skip
        response["Content-Disposition"] = f'attachment; filename="audit-events.{kind}"'
        return response

    pagination_class = AuditEventPagination
    filterset_class = AuditEventFilterSet


class AuditVerifyView(APIView):
    """Recompute the hash chain and check it against the stored hashes and checkpoints.

    The web server has neither the signing key nor the external checkpoint file (both are
    kept from it on purpose): ``manage.py audit_verify`` on the host checks those too.
    """

    permission_classes = [IsAuditor]

    def get(self, request: Any) -> Response:
        report = sealing.verify()
        events.record(events.AUDIT_VERIFIED, request=request, reason="ok" if report.ok else "not_intact")
        return Response(report.as_dict())


class AuditStatsView(APIView):
    """Requests, denials and errors over time per upstream, and latency percentiles.

    ``?bucket=minute|hour|day`` (default hour), ``occurred_after`` / ``occurred_before``
    (default: the last 24 hours) and every filter of the event list.
    """

    permission_classes = [IsAuditor]

    def get(self, request: Any) -> Response:
        bucket = request.query_params.get("bucket", "hour")
        if bucket not in stats.BUCKETS:
            raise ValidationError({"bucket": [f"One of {', '.join(stats.BUCKETS)}."]})
        filterset = AuditEventFilterSet(request.query_params, queryset=AuditEvent.objects.all(), request=request)
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        after, before = stats.window(filterset.form.cleaned_data.get("occurred_after"),
                                     filterset.form.cleaned_data.get("occurred_before"))  # fmt: skip
        queryset = filterset.qs.filter(occurred_at__gte=after, occurred_at__lt=before)
        gateway = queryset.filter(event_type__startswith="gateway.")
        return Response(
            {
                "from": after.isoformat(),
                "to": before.isoformat(),
                "bucket": bucket,
                "counts": stats.counts(gateway, bucket),
                "latency_ms": stats.latency_percentiles(gateway.filter(event_type="gateway.request")),
            }
        )
