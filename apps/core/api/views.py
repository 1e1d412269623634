"""Site-level API views: health and the caller's identity."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, connection
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api.serializers import ReplicaHealthSerializer
from apps.core.replica import replica_status

logger = logging.getLogger(__name__)


_REPLICA_FIELD = ReplicaHealthSerializer(
    required=False, help_text="Only with a read replica configured. Informative: the status code never depends on it."
)


class HealthView(APIView):
    """Liveness and database reachability, for load balancers and the deploy's smoke check.

    With a read replica configured, ``replica`` says how it is (``apps.core.replica``, probed
    at most every few seconds).  The status code is the primary's alone: audit reads fall
    back to the primary, so a replica outage must not take a web host out of the pool."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        summary="Liveness and database check",
        responses={
            200: inline_serializer("Health", {"status": serializers.CharField(), "replica": _REPLICA_FIELD}),
            503: OpenApiResponse(
                inline_serializer("HealthUnavailable", {"status": serializers.CharField(),
                                  "code": serializers.CharField(), "request_id": serializers.CharField()}),
                description="The database is unreachable: `code` is `database_unavailable`.",
            ),
        },
        examples=[OpenApiExample("Up", value={"status": "ok"}, response_only=True, status_codes=["200"])],
    )  # fmt: skip
    def get(self, request: Any) -> Response:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError as exc:
            logger.error("Health check: database unavailable: %s", type(exc).__name__)
            return Response(
                {"status": "unavailable", "code": "database_unavailable", "request_id": request.request_id},
                status=503,
            )
        body: dict[str, Any] = {"status": "ok"}
        if (replica := replica_status()) is not None:
            body["replica"] = replica
        return Response(body)


class MeView(APIView):
    """Who the API thinks you are, and how you authenticated."""

    @extend_schema(
        summary="Who you are",
        responses=inline_serializer("Me", {
            "username": serializers.CharField(), "is_staff": serializers.BooleanField(),
            "groups": serializers.ListField(child=serializers.CharField()),
            "authentication": serializers.CharField(help_text="The authentication class that accepted you."),
            "scopes": serializers.ListField(
                child=serializers.CharField(), allow_null=True,
                help_text="Your token's scopes on the management API; null for a session (not limited by scopes)."),
        }),
        examples=[OpenApiExample("An auditor", response_only=True, value={
            "username": "carol", "is_staff": False, "groups": ["auditor"],
            "authentication": "ManagementAPITokenAuthentication", "scopes": ["audit:read"]})],
    )  # fmt: skip
    def get(self, request: Any) -> Response:
        user = request.user
        return Response(
            {
                "username": user.get_username(),
                "is_staff": user.is_staff,
                "groups": sorted(user.groups.values_list("name", flat=True)),
                "authentication": type(request.successful_authenticator).__name__,
                "scopes": getattr(request.auth, "scopes", None),
            }
        )
