from typing import Any

from django.db.models import QuerySet
from django.http import Http404, StreamingHttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from apps.audit import chains, events, exporting, sealing, stats, verifications
from apps.audit.acting import Acting
from apps.audit.api.filtersets import AuditEventFilterSet
from apps.audit.api.schema import CHAIN_EXAMPLE, EVENT_EXAMPLE, STATS_EXAMPLE, VERIFY_EXAMPLE
from apps.audit.api.serializers import (
    AuditChainSerializer,
    AuditEventSerializer,
    AuditStatsSerializer,
    AuditVerifyQuerySerializer,
    AuditVerifySerializer,
)
from apps.audit.choices import AUDIT_READ
from apps.audit.models import AuditEvent
from apps.audit.permissions import IsAuditor, is_auditor
from apps.core.api.permissions import TokenScope, limit_to_token_upstreams, refuse, token_upstream_ids
from apps.core.pagination import CursorPagination
from apps.core.replica import reads_from_replica, replica_status


class AuditEventPagination(CursorPagination):
    # Cursor pagination: constant cost per page at any table size (no OFFSET, no COUNT),
    # newest first by (occurred_at, seq); every filter has an index (filter column, time).
    # The base checks the cursor and page_size (a 400, never a 500 or a silent default).
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


@extend_schema_view(
    list=extend_schema(
        summary="List audit events, newest first",
        description="Auditors and administrators see every event, other users their own. Cursor pages "
        "(`next`/`previous` links); no total count, so a page costs the same at any table size.",
        examples=[OpenApiExample("A denied gateway request", value=EVENT_EXAMPLE, response_only=True)],
    ),
    retrieve=extend_schema(
        summary="One audit event",
        examples=[OpenApiExample("A denied gateway request", value=EVENT_EXAMPLE, response_only=True)],
    ),
    export=extend_schema(
        summary="Export audit events as CSV or NDJSON",
        description="The filtered events, streamed. `?format=csv` (default) or `?format=ndjson`. "
        "CSV cells that look like formulas are quoted.",
        parameters=[OpenApiParameter("format", enum=["csv", "ndjson"], description="Default: csv.")],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="CSV with a header line.",
                examples=[OpenApiExample("csv", value="id,event_type,occurred_at,...\n")],
            ),
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="One JSON object a line."),
        },
    ),
    chain=extend_schema(
        summary="The tree of requests an event belongs to",
        description="From this event up its `parent_event_id` links to the user's request (the root), then the "
        "whole tree down from it: each request a service made through the gate while serving another is a child "
        f"of it. At most {chains.MAX_DEPTH} links up and down and {chains.MAX_NODES} events (`truncated` says when "
        "some were left out); only the events you may see.",
        responses=AuditChainSerializer,
        examples=[OpenApiExample("Calls made while serving a request", value=CHAIN_EXAMPLE, response_only=True)],
    ),
)
class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The audit trail, newest first. Read-only; reading it is itself audited."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    permission_classes = [IsAuthenticated, TokenScope]
    read_scope = AUDIT_READ

    def get_queryset(self) -> QuerySet[AuditEvent]:
        # Auditors and admins read everything; everyone else only their own events; and a
        # token limited to some upstreams only their events (list, detail and export alike).
        if is_auditor(self.request.user):
            queryset = AuditEvent.objects.all()
        else:
            queryset = AuditEvent.objects.filter(actor_id=self.request.user.pk)
        return limit_to_token_upstreams(queryset, self.request, "upstream_id")

    # The reads of the trail may come from the replica (apps.core.replica); the caller, its
    # groups and its token always come from the primary, and so does the event of the read.
    @reads_from_replica(AuditEvent)
    def list(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)  # the page first: it need not show its own read
        events.record(events.AUDIT_VIEWED, acting=Acting.from_request(request),
                      query=request.META.get("QUERY_STRING", "")[:2000])  # fmt: skip
        return response

    @reads_from_replica(AuditEvent)
    def retrieve(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        response = super().retrieve(request, *args, **kwargs)
        events.record(events.AUDIT_VIEWED, acting=Acting.from_request(request), object_type="audit.auditevent",
                      object_id=str(kwargs.get("pk", "")))  # fmt: skip
        return response

    def perform_content_negotiation(self, request: Any, force: bool = False) -> Any:
        """An unknown ``?format=`` is a 400 naming the formats, not DRF's bare 404."""
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:
            formats = sorted({r.format for r in self.get_renderers()})
            raise ValidationError({"format": [f"One of: {', '.join(formats)}."]}) from None

    @action(detail=False, renderer_classes=[CSVRenderer, NDJSONRenderer, JSONRenderer])
    @reads_from_replica(AuditEvent)
    def export(self, request: Any) -> StreamingHttpResponse:
        """The filtered events as CSV (default) or NDJSON (``?format=ndjson``), streamed."""
        if request.query_params.get("format", "csv") not in ("csv", "ndjson"):
            raise ValidationError({"format": ["csv or ndjson."]})
        kind = "ndjson" if request.accepted_renderer.format == "ndjson" else "csv"
        # The database is chosen now, inside the scope: the body streams after the view returned.
        queryset = self.filter_queryset(self.get_queryset())
        queryset = queryset.using(queryset.db)
        events.record(events.AUDIT_EXPORTED, acting=Acting.from_request(request),
                      query=request.META.get("QUERY_STRING", "")[:2000])  # fmt: skip
        # The captured evidence's metadata is the auditors' (apps.audit.api.evidence): others export without it.
        evidence = is_auditor(request.user)
        lines = (exporting.ndjson_lines(queryset, evidence=evidence) if kind == "ndjson"
                 else exporting.csv_lines(queryset, evidence=evidence))  # fmt: skip
        response = StreamingHttpResponse(lines, content_type=CSVRenderer.media_type if kind == "csv"
                                         else NDJSONRenderer.media_type)  # fmt: skip
        response["Content-Disposition"] = f'attachment; filename="audit-events.{kind}"'
        return response

    @action(detail=True)
    @reads_from_replica(AuditEvent)
    def chain(self, request: Any, pk: str) -> Response:
        """The tree of requests this event belongs to, from the user's request down."""
        found = chains.tree(self.get_queryset(), self.get_object())
        events.record(events.AUDIT_VIEWED, acting=Acting.from_request(request), object_type="audit.auditevent",
                      object_id=str(pk))  # fmt: skip
        return Response(AuditChainSerializer(found, context=self.get_serializer_context()).data)

    pagination_class = AuditEventPagination
    filterset_class = AuditEventFilterSet

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        # Only the export streams CSV or NDJSON; every other answer under ?format=csv|ndjson
        # (errors, OPTIONS) is JSON, like all answers of the API.
        # (No renderer yet: the request failed before negotiation, e.g. ?format=AAA.)
        renderer = getattr(request, "accepted_renderer", None)
        if not isinstance(response, StreamingHttpResponse) and (
            renderer is None or isinstance(renderer, CSVRenderer | NDJSONRenderer)
        ):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


class AuditVerifyView(APIView):
    """Recompute the hash chain and check it against the stored hashes and checkpoints.

    A page at a time: every checkpoint is checked against the one before it, and the events
    are re-hashed from the segment holding ``from_seq`` until ``max_events`` is reached;
    ``next`` goes on from there (``complete`` once the walk reached the last sealed segment).
    A whole trail can take minutes, which no web request should hold a thread for.
    ``last_full_verification`` says when ``manage.py audit_verify`` last walked all of it on a
    host, with the signing keys and the external checkpoint file (both kept from the web
    server on purpose).  Each walk is in the trail, and one that finds a problem fires the
    ``verify_failed`` alerts like a failed ``audit_verify``.
    """

    permission_classes = [IsAuditor, TokenScope]
    read_scope = AUDIT_READ

    @extend_schema(
        summary="Verify the audit hash chain",
        parameters=[AuditVerifyQuerySerializer],
        responses=AuditVerifySerializer,
        examples=[OpenApiExample("Intact, first page", value=VERIFY_EXAMPLE, response_only=True)],
    )
    def get(self, request: Any) -> Response:
        if token_upstream_ids(request) is not None:
            refuse(request, "The chain covers every upstream's events: a token limited to some may not verify it.")
        query = AuditVerifyQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        report = sealing.verify(**query.validated_data)
        verifications.record(report, acting=Acting.from_request(request), scope=verifications.RANGE)
        last_full = verifications.last_full()
        return Response(
            {
                **report.as_dict(),
                "next": None if report.complete else self._next(request, report),
                "last_full_verification": last_full.as_dict() if last_full else None,
            }
        )

    @staticmethod
    def _next(request: Any, report: sealing.Report) -> str:
        url = request.build_absolute_uri()
        after = (report.through_seq or 0) + 1
        return str(replace_query_param(url, "from_seq", after))


class AuditStatsView(generics.GenericAPIView):
    """Requests, denials and errors over time per upstream, latency percentiles, top callers
    and recent denials: what the audit dashboard draws.

    ``?bucket=minute|hour|day`` (default hour), ``occurred_after`` / ``occurred_before``
    (default: the last 24 hours) and every filter of the event list.
    """

    permission_classes = [IsAuditor, TokenScope]
    read_scope = AUDIT_READ
    queryset = AuditEvent.objects.all()
    # Declared for the schema and the browsable API's filter form; get() applies the filters itself.
    filter_backends = [DjangoFilterBackend]
    filterset_class = AuditEventFilterSet
    pagination_class = None

    @extend_schema(
        summary="Audit statistics for dashboards",
        parameters=[OpenApiParameter("bucket", enum=list(stats.BUCKETS), description="Default: hour.")],
        responses=AuditStatsSerializer,
        examples=[OpenApiExample("Last 24 hours", value=STATS_EXAMPLE, response_only=True)],
    )
    @reads_from_replica(AuditEvent)
    def get(self, request: Any) -> Response:
        bucket = request.query_params.get("bucket", "hour")
        if bucket not in stats.BUCKETS:
            raise ValidationError({"bucket": [f"One of {', '.join(stats.BUCKETS)}."]})
        events_seen = limit_to_token_upstreams(AuditEvent.objects.all(), request, "upstream_id")
        filterset = AuditEventFilterSet(request.query_params, queryset=events_seen, request=request)
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
                "top_callers": stats.top_callers(gateway),
                "recent_denials": stats.recent_denials(gateway),
                "read_from": queryset.db,
                "replica": replica_status(),
            }
        )
