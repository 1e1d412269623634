"""``POST /api/introspect``: upstreams check an ``X-Auditgate-Identity`` assertion (RFC 7662 shape).

Served by the API daemon group, never the gateway's: an upstream calls it while the
gateway request that reached it is still waiting (see apps.gateway.introspection).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit import events
from apps.audit.models import Decision
from apps.core.errors import error_body
from apps.core.openapi import ErrorSerializer
from apps.core.parsers import JSONParser
from apps.gateway.choices import IntrospectionReason
from apps.gateway.introspection import Introspection, authenticate_caller, introspect


def basic_credentials(request: Any) -> tuple[str, str] | None:
    """(user, password) from ``Authorization: Basic ...``, or None."""
    scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, key = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (name, key) if sep and name else None


def submitted_assertion(request: Any) -> str:
    """The ``token`` parameter (form-encoded as RFC 7662 says, or JSON); "" if absent or unreadable."""
    try:
        value = request.data.get("token", "")
    except (ParseError, UnsupportedMediaType, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def record(request: Any, result: Introspection, caller_name: str, status: int) -> None:
    assertion = result.assertion
    events.record(
        events.IDENTITY_INTROSPECTED,
        request=request,
        auth_method="upstream_basic",
        upstream_id=result.upstream.pk if result.upstream else None,
        upstream_name=caller_name[:64],
        decision=Decision.ALLOW if result.active else Decision.DENY,
        reason=result.reason,
        status=status,
        token_key_id=assertion.token_key_id[:32] if assertion else "",
        object_type="gateway.request" if assertion else "",
        object_id=assertion.request_id[:64] if assertion else "",
        object_repr=assertion.username[:200] if assertion else "",
    )


_REQUEST = inline_serializer("IntrospectionRequest", {"token": serializers.CharField(help_text="The assertion.")})


class IntrospectView(APIView):
    """Is this identity assertion active?  ``{"active": false}`` for anything that is not."""

    authentication_classes: list[Any] = []  # The caller authenticates as an upstream, below.
    permission_classes = [AllowAny]
    parser_classes = [FormParser, JSONParser]

    @extend_schema(
        summary="Introspect an identity assertion (RFC 7662)",
        description="For upstreams: is the `X-Auditgate-Identity` assertion this request carried active? "
        "Authenticate as the upstream with HTTP Basic (its name and identity key). Anything that is not "
        'active, for any reason, is `{"active": false}`.',
        auth=[],
        request={"application/x-www-form-urlencoded": _REQUEST, "application/json": _REQUEST},
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="RFC 7662 claims (`active`, `sub`, `username`, `aud`, `iat`, `exp`, `request_id`...).",
                examples=[OpenApiExample("inactive", value={"active": False})],
            ),
            401: OpenApiResponse(
                ErrorSerializer, description="The caller is not an upstream: `code` `invalid_client`."
            ),
            503: OpenApiResponse(ErrorSerializer, description="No database: `code` `database_unavailable`."),
        },
    )
    def post(self, request: Any) -> Response:
        # An unreachable database is apps.core.middleware.DatabaseUnavailableMiddleware's 503,
        # as for every view; other database errors are bugs and stay 500s.
        name, key = basic_credentials(request) or ("", "")
        caller = authenticate_caller(name, key) if name else None
        if caller is None:
            record(request, Introspection(IntrospectionReason.INVALID_CLIENT), name, 401)
            detail = "Authenticate as the upstream: HTTP Basic with its name and identity key."
            body = {"error": "invalid_client", **error_body(request, "invalid_client", detail)}  # RFC 6749 5.2 too
            response = Response(body, status=401)
            response["WWW-Authenticate"] = 'Basic realm="auditgate-introspect"'
            return response
        result = introspect(caller, submitted_assertion(request))
        record(request, result, caller.name, 200)
        response = Response(result.response())
        response["Cache-Control"] = "no-store"
        return response
