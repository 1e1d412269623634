"""Reading captured evidence (``apps.audit.evidence``): auditors only, every read audited first.

``GET /api/audit/events/<id>/evidence/`` answers what the event sealed of both directions
(digests, sizes, what was redacted, the redacted headers); ``.../evidence/<request|response>/``
answers the stored body itself, as an attachment of type ``application/octet-stream`` with
``nosniff`` and a sandboxing CSP, so a captured HTML page never renders in the gateway's
origin.  The ``audit.evidence_read`` event is committed before anything is returned; when it
cannot be, the read is refused (503 ``audit_unavailable``), fail-closed like the gateway.
"""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from apps.audit import events
from apps.audit.acting import Acting
from apps.audit.api.schema import EVIDENCE_EXAMPLE
from apps.audit.api.serializers import EvidenceSerializer
from apps.audit.choices import AUDIT_READ
from apps.audit.evidence import storage
from apps.audit.evidence.capture import DIRECTIONS
from apps.audit.models import AuditEvent
from apps.audit.permissions import IsAuditor
from apps.core.api.permissions import TokenScope, limit_to_token_upstreams
from apps.core.openapi import ErrorSerializer


class EvidenceNotCaptured(exceptions.NotFound):
    default_detail = "No evidence was captured for this event (or for this direction of it)."
    default_code = "evidence_not_captured"


class EvidenceWithheld(exceptions.NotFound):
    default_detail = "This body was withheld, not stored: see the event's evidence for why."
    default_code = "evidence_withheld"


class EvidenceMissing(exceptions.APIException):
    status_code = 409
    default_detail = "The captured body is not stored any more: run audit_verify."
    default_code = "evidence_missing"


class EvidenceAltered(exceptions.APIException):
    status_code = 409
    default_detail = "The stored body no longer matches its sealed digest: run audit_verify."
    default_code = "evidence_altered"


class AuditUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "The audit trail cannot record this read now, so the evidence is not returned."
    default_code = "audit_unavailable"


class OctetStreamRenderer(BaseRenderer):
    """Lets ``Accept: application/octet-stream`` through negotiation; the body view answers itself."""

    media_type = "application/octet-stream"
    format = "bin"


def _error(status: int, code: str, detail: str) -> OpenApiResponse:
    example = {"code": code, "detail": detail, "request_id": "ZT7b1X8AAQEAAB3xGk0AAAAB"}
    return OpenApiResponse(
        ErrorSerializer,
        description=f"`code`: `{code}`.",
        examples=[OpenApiExample(code, value=example, status_codes=[str(status)])],
    )


_NOT_CAPTURED = {
    (404, "application/json"): OpenApiResponse(
        ErrorSerializer,
        description="No such event (`not_found`), none captured (`evidence_not_captured`), or the body was "
        "withheld (`evidence_withheld`).",
    )
}
_UNRECORDED = {(503, "application/json"): _error(503, "audit_unavailable", AuditUnavailable.default_detail)}


class EvidenceView(APIView):
    permission_classes = [IsAuditor, TokenScope]
    read_scope = AUDIT_READ

    def event(self, request: Any, pk: int) -> AuditEvent:
        """The event, if the caller's token may see it, with evidence; else a 404."""
        visible = limit_to_token_upstreams(AuditEvent.objects.all(), request, "upstream_id")
        event = visible.filter(pk=pk).only("id", "evidence", "upstream_id").first()
        if event is None:
            raise exceptions.NotFound()
        if not event.evidence:
            raise EvidenceNotCaptured()
        return event

    @staticmethod
    def audit_read(request: Any, event: AuditEvent, what: str) -> None:
        """Committed before anything is returned; refuses the read when it cannot be."""
        try:
            events.record(events.AUDIT_EVIDENCE_READ, acting=Acting.from_request(request),
                          object_type="audit.auditevent", object_id=str(event.pk), object_repr=what)  # fmt: skip
        except DatabaseError as exc:
            raise AuditUnavailable() from exc

    @extend_schema(
        operation_id="audit_events_evidence_retrieve",
        summary="What was captured of an event's bodies",
        description="Auditors only. Per direction: the SHA-256 of the stored body, its size, whether it was "
        "truncated, what was redacted, the headers (redacted) and the content type, or why the body was withheld; "
        "`body_url` answers the body. The read is itself audited (`audit.evidence_read`) before it is answered.",
        responses={200: EvidenceSerializer, **_NOT_CAPTURED, **_UNRECORDED},
        examples=[OpenApiExample("A captured JSON call", value=EVIDENCE_EXAMPLE, response_only=True)],
    )
    def get(self, request: Any, pk: int) -> Response:
        event = self.event(request, pk)
        self.audit_read(request, event, "metadata")
        sides = {
            direction: {**side, "body_url": self.body_url(request, event, direction) if side.get("sha256") else None}
            for direction, side in (event.evidence or {}).items()
            if direction in DIRECTIONS and isinstance(side, dict)
        }
        return Response({"event": event.pk, "request": sides.get("request"), "response": sides.get("response")})

    @staticmethod
    def body_url(request: Any, event: AuditEvent, direction: str) -> str:
        kwargs = {"pk": event.pk, "direction": direction}
        return reverse("audit-api:auditevent-evidence-body", kwargs=kwargs, request=request)


class EvidenceBodyView(EvidenceView):
    renderer_classes = [JSONRenderer, OctetStreamRenderer]

    @extend_schema(
        operation_id="audit_events_evidence_body_retrieve",
        summary="A captured body",
        description="Auditors only. The stored bytes (redacted, at most the upstream's `evidence_max_bytes`) as an "
        "attachment; never rendered by a browser (`nosniff`, a sandboxing CSP). The read is audited "
        "(`audit.evidence_read`) before the body is returned.",
        parameters=[OpenApiParameter("direction", str, OpenApiParameter.PATH, enum=list(DIRECTIONS))],
        responses={
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The body."),
            **_NOT_CAPTURED,
            (409, "application/json"): OpenApiResponse(
                ErrorSerializer,
                description="The stored body is gone (`evidence_missing`) or changed (`evidence_altered`): the trail "
                "is damaged, `audit_verify` names the event.",
            ),
            **_UNRECORDED,
        },
    )
    def get(self, request: Any, pk: int, direction: str = "") -> HttpResponse:  # type: ignore[override]
        event = self.event(request, pk)
        side = (event.evidence or {}).get(direction)
        if not isinstance(side, dict) or ("sha256" not in side and "withheld" not in side):
            raise EvidenceNotCaptured()
        if "withheld" in side:
            raise EvidenceWithheld(f"This body was withheld, not stored: {side['withheld']}.")
        body = storage.content(side["sha256"]) if side["sha256"] else b""
        if body is None:
            raise EvidenceMissing()
        if side["sha256"] and storage.digest(body) != side["sha256"]:
            raise EvidenceAltered()
        self.audit_read(request, event, direction)
        return attachment(body, f"event-{event.pk}-{direction}.bin")

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        # Errors are JSON, whatever the client accepted.
        if isinstance(response, Response):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


def attachment(body: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["Cache-Control"] = "no-store"
    return response
