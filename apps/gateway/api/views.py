"""The gateway's management API: upstreams, rules, the policy dry run and API tokens.

Tokens (``/api/tokens/``): users manage their own, administrators anyone's.  The
plaintext token is in the create response only; no other response has it or its hash.
``POST .../revoke/`` revokes (the row stays, for the audit trail, and there is no
``DELETE``); a token is never updated, so scopes and secret stay as created.  A request
authenticated by a token needs ``tokens:read`` to list and ``tokens:write`` to create or
revoke, and cannot create a token with more than its own: more scopes, other upstreams,
wider networks or a later expiry.  A token limited to some upstreams sees and makes only
its own user's tokens, also when that user is an administrator.  New tokens have no
management scope unless asked: they may call the gateway only.  ``management_api`` is
the former flag, kept for old clients: it reads as "has any scope", and ``true`` on
creation asks for every scope.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny, IsAdminUser, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from apps.audit import events
from apps.audit.acting import Acting
from apps.audit.choices import Decision
from apps.core.api.permissions import (
    TokenScope,
    check_upstream,
    limit_to_token_upstreams,
    refuse,
    token_upstream_ids,
)
from apps.core.errors import error_body
from apps.core.openapi import ErrorSerializer
from apps.core.parsers import JSONParser
from apps.gateway import actions, tokens
from apps.gateway import scopes as token_scopes
from apps.gateway.api.filtersets import AccessRuleFilterSet, APITokenFilterSet, UpstreamFilterSet
from apps.gateway.api.permissions import request_token
from apps.gateway.api.schema import (
    RULE_REQUEST,
    RULE_RESPONSE,
    TOKEN_EXAMPLE,
    TOKEN_RESPONSE,
    UPSTREAM_REQUEST,
    UPSTREAM_RESPONSE,
    crud_schema,
)
from apps.gateway.api.serializers import (
    AccessRuleSerializer,
    APITokenSerializer,
    CreatedTokenSerializer,
    PolicyCheckSerializer,
    UpstreamSerializer,
)
from apps.gateway.choices import IntrospectionReason
from apps.gateway.introspection import Introspection, authenticate_caller, introspect
from apps.gateway.models import AccessRule, APIToken, Upstream
from apps.gateway.policy import AccessRequest, decide


class AuditedModelViewSet(viewsets.ModelViewSet):
    """Every create, update and delete is written with its audit event, in one transaction."""

    event_types: dict[str, str]

    def perform_create(self, serializer: Any) -> None:
        actions.save(None, event_type=self.event_types["created"], acting=Acting.from_request(self.request),
                     before={}, save=serializer.save)  # fmt: skip

    def perform_update(self, serializer: Any) -> None:
        before = actions.snapshot(serializer.instance)
        actions.save(None, event_type=self.event_types["updated"], acting=Acting.from_request(self.request),
                     before=before, save=serializer.save)  # fmt: skip

    def perform_destroy(self, instance: Any) -> None:
        actions.delete(instance, event_type=self.event_types["deleted"], acting=Acting.from_request(self.request))


@crud_schema("upstream", "upstreams", UPSTREAM_REQUEST, UPSTREAM_RESPONSE)
class UpstreamViewSet(AuditedModelViewSet):
    """A token limited to some upstreams lists only those, may not create one, and may
    not repoint its own (``TARGET_FIELDS``): that would send their callers and injected
    credential to another service, maybe one behind an upstream it may not use."""

    queryset = Upstream.objects.all()
    serializer_class = UpstreamSerializer
    permission_classes = [IsAdminUser, TokenScope]
    read_scope, write_scope = token_scopes.POLICY_READ, token_scopes.POLICY_WRITE
    filterset_class = UpstreamFilterSet
    event_types = {"created": events.UPSTREAM_CREATED, "updated": events.UPSTREAM_UPDATED,
                   "deleted": events.UPSTREAM_DELETED}  # fmt: skip
    TARGET_FIELDS = ("base_url", "internal", "preserve_host")

    def get_queryset(self) -> Any:
        # Only the list is narrowed: another upstream's detail is a 403 token_scope (TokenScope), not a 404.
        queryset = super().get_queryset()
        return limit_to_token_upstreams(queryset, self.request, "pk") if self.action == "list" else queryset

    @staticmethod
    def upstream_of(upstream: Upstream) -> int:
        return upstream.pk

    def create(self, request: Any, *args: Any, **kwargs: Any) -> Response:
        check_upstream(request, None, "create upstreams")
        return super().create(request, *args, **kwargs)

    def perform_update(self, serializer: Any) -> None:
        if token_upstream_ids(self.request) is not None:
            data, upstream = serializer.validated_data, serializer.instance
            changed = [name for name in self.TARGET_FIELDS if name in data and data[name] != getattr(upstream, name)]
            if changed:
                refuse(self.request, f"A token limited to some upstreams may not change {', '.join(changed)}.")
        super().perform_update(serializer)


@crud_schema("rule", "access rules", RULE_REQUEST, RULE_RESPONSE)
class AccessRuleViewSet(AuditedModelViewSet):
    """A token limited to some upstreams sees and changes only their rules."""

    queryset = AccessRule.objects.select_related("upstream", "user", "group")
    serializer_class = AccessRuleSerializer
    permission_classes = [IsAdminUser, TokenScope]
    read_scope, write_scope = token_scopes.POLICY_READ, token_scopes.POLICY_WRITE
    filterset_class = AccessRuleFilterSet
    event_types = {"created": events.RULE_CREATED, "updated": events.RULE_UPDATED, "deleted": events.RULE_DELETED}

    def get_queryset(self) -> Any:
        # Only the list is narrowed: another upstream's rule is a 403 token_scope (TokenScope), not a 404.
        queryset = super().get_queryset()
        return limit_to_token_upstreams(queryset, self.request, "upstream") if self.action == "list" else queryset

    @staticmethod
    def upstream_of(rule: AccessRule) -> int:
        return rule.upstream_id

    def perform_create(self, serializer: Any) -> None:
        check_upstream(self.request, serializer.validated_data["upstream"].pk, "add rules to this upstream")
        super().perform_create(serializer)

    def perform_update(self, serializer: Any) -> None:
        if "upstream" in serializer.validated_data:
            check_upstream(self.request, serializer.validated_data["upstream"].pk, "move rules to this upstream")
        super().perform_update(serializer)


class PolicyCheckView(APIView):
    """Dry run: would this user, with this method, on this upstream and path, from this
    address, at this time, be allowed, and by which rule?  Nothing is forwarded."""

    permission_classes = [IsAdminUser, TokenScope]
    read_scope = write_scope = token_scopes.POLICY_READ  # a POST that changes nothing
    serializer_class = PolicyCheckSerializer

    @extend_schema(
        summary="Dry run of the access policy",
        request=PolicyCheckSerializer,
        responses=inline_serializer(
            "PolicyCheckResult",
            {
                "allowed": serializers.BooleanField(),
                "code": serializers.CharField(help_text="The reason code, e.g. allowed, no_matching_rule."),
                "rule": serializers.IntegerField(allow_null=True, help_text="The rule that decided, if any."),
                "rule_url": serializers.URLField(allow_null=True),
            },
        ),
        examples=[
            OpenApiExample("Would bob POST /reports/x?", request_only=True, value={
                "user": "bob", "upstream": "crm", "method": "POST", "path": "/reports/x", "source_ip": "10.0.0.5"}),
            OpenApiExample("Denied", response_only=True, value={
                "allowed": False, "code": "no_matching_rule", "rule": None, "rule_url": None}),
            OpenApiExample("Allowed", response_only=True, value={
                "allowed": True, "code": "allowed", "rule": 12, "rule_url": "https://gate.example/api/rules/12/"}),
        ],
    )  # fmt: skip
    def post(self, request: Any) -> Response:
        serializer = PolicyCheckSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        check_upstream(request, data["upstream"].pk, "ask about this upstream")
        user = data["user"]
        decision = decide(
            AccessRequest(
                user_id=user.pk,
                group_ids=frozenset(user.groups.values_list("id", flat=True)),
                upstream=data["upstream"],
                method=data["method"],
                path=data["path"],
                source_ip=data.get("source_ip"),
                at=data.get("at") or timezone.now(),
            )
        )
        rule_url = (
            reverse("gateway-api:accessrule-detail", args=[decision.rule_id], request=request)
            if decision.rule_id
            else None
        )
        return Response(
            {"allowed": decision.allowed, "code": decision.reason, "rule": decision.rule_id, "rule_url": rule_url}
        )


@extend_schema_view(
    list=extend_schema(summary="List API tokens", description="Yours; administrators see everyone's.",
                       examples=[TOKEN_EXAMPLE]),
    retrieve=extend_schema(summary="One API token", examples=[TOKEN_EXAMPLE]),
    create=extend_schema(
        summary="Create an API token",
        description="The answer's `token` is the only copy: it is never shown again. Audited.",
        responses={201: CreatedTokenSerializer},
        examples=[
            OpenApiExample("For a script", request_only=True,
                           value={"label": "report job", "upstreams": ["crm"], "expires_in_days": 30}),
            OpenApiExample("Created", response_only=True, status_codes=["201"],
                           value={**TOKEN_RESPONSE, "token": "agt_k3J9x2Qa_<secret>_<checksum>"}),
        ],
    ),
    revoke=extend_schema(summary="Revoke an API token", request=None, examples=[TOKEN_EXAMPLE]),
)  # fmt: skip
class APITokenViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Your API tokens (administrators: everyone's, ``?user=<username>``).  The token
    itself is shown once, in the answer to its creation.  Tokens are revoked
    (``POST .../revoke/``), never deleted: the audit trail refers to them, so a revoked
    token stays readable, with its revocation time (no DELETE, which would promise it is gone)."""

    serializer_class = APITokenSerializer
    filterset_class = APITokenFilterSet
    permission_classes = [IsAuthenticated, TokenScope]
    read_scope, write_scope = token_scopes.TOKENS_READ, token_scopes.TOKENS_WRITE

    queryset = APIToken.objects.none()  # for the schema; get_queryset() decides what a user sees

    def get_queryset(self) -> QuerySet[APIToken]:
        queryset = APIToken.objects.select_related("user", "created_by").prefetch_related("upstreams")
        token = request_token(self.request)
        if self.request.user.is_staff and (token is None or token.all_upstreams):
            return queryset
        return queryset.filter(user=self.request.user.pk)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        attrs = {"user": request.user, **serializer.validated_data}
        acting = Acting.from_request(request)
        try:
            token, plaintext = tokens.create_token(**attrs, created_by=request.user, acting=acting)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from None
        data = {**self.get_serializer(token).data, "token": plaintext}
        # The plaintext exists nowhere else: keep it out of every cache.
        return Response(data, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        token = self.get_object()
        tokens.revoke_token(token, acting=Acting.from_request(request))
        return Response(self.get_serializer(token).data)


# --- POST /api/introspect (RFC 7662): served by the API daemon group, never the gateway's:
# an upstream calls it while the gateway request that reached it is still waiting
# (apps.gateway.introspection).


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
        acting=Acting.from_request(request),
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
