"""``/api/tokens/``: users manage their own API tokens, administrators anyone's.

The plaintext token is in the create response only; no other response has it or
its hash.  ``POST .../revoke/`` revokes (the row stays, for the audit trail, and there
is no ``DELETE``); a token is never updated, so scopes and secret stay as created.

A request authenticated by a token needs ``tokens:read`` to list and ``tokens:write``
to create or revoke, and cannot create a token with more than its own: more scopes,
other upstreams, wider networks or a later expiry.  A token limited to some upstreams
sees and makes only its own user's tokens, also when that user is an administrator.
New tokens have no management scope unless asked: they may call the gateway only.
``management_api`` is the former flag, kept for old clients: it reads as "has any
scope", and ``true`` on creation asks for every scope.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import django_filters
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.fields import (
    STRICT_FIELD_MAPPING,
    StrictBooleanField,
    StrictCharField,
    StrictDateTimeField,
    StrictStringMixin,
)
from apps.core.filtersets import BooleanFilter, StrictFilterSet
from apps.gateway import scopes as token_scopes
from apps.gateway import tokens
from apps.gateway.api.permissions import TokenScope, request_token
from apps.gateway.models import APIToken, Upstream
from apps.gateway.models.tokens import MAX_CIDRS, SHOWN_FIELDS, normalise_cidrs


class ScopeField(StrictStringMixin, serializers.ChoiceField):
    default_error_messages = {"not_a_string": "Expected a string."}


class APITokenSerializer(serializers.ModelSerializer):
    serializer_field_mapping = STRICT_FIELD_MAPPING
    url = serializers.HyperlinkedIdentityField(view_name="gateway-api:apitoken-detail")
    user = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.all(), required=False, help_text="Admins only."
    )
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Null when made on the host (manage.py)."
    )
    status = serializers.SerializerMethodField()
    expires_at = StrictDateTimeField(required=False, help_text="Default and maximum: now + the maximum lifetime.")
    # The upper bound only keeps the date computable; the deployment's maximum lifetime applies too.
    expires_in_days = serializers.IntegerField(write_only=True, required=False, min_value=1, max_value=36500)
    upstreams = serializers.SlugRelatedField(
        slug_field="name", queryset=Upstream.objects.all(), many=True, required=False
    )
    allowed_cidrs = serializers.ListField(child=StrictCharField(max_length=64), required=False, max_length=MAX_CIDRS)
    scopes = serializers.ListField(
        child=ScopeField(choices=token_scopes.SCOPE_CHOICES),
        required=False,
        max_length=len(token_scopes.SCOPES),
        help_text="What it may do on the management API: audit:read, policy:read, policy:write (includes "
        "policy:read), tokens:read, tokens:write (includes tokens:read). Default: none, the gateway only.",
    )
    management_api = StrictBooleanField(
        source="uses_management_api",
        required=False,
        help_text="Deprecated (use scopes): whether it has any scope; true on creation asks for every scope.",
    )

    class Meta:
        model = APIToken
        # expires_in_days is write-only: another way to give expires_at on creation.
        fields = ("url", "id", *SHOWN_FIELDS, "management_api", "expires_in_days")
        read_only_fields = ("key_id", "created_at", "revoked_at", "enabled", "last_used_at", "last_used_ip")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None and not request.user.is_staff:
            # Non-admins may only name themselves, and the browsable form lists no other users.
            user_field = self.fields["user"]
            user_field.queryset = get_user_model().objects.filter(pk=request.user.pk)
            user_field.error_messages["does_not_exist"] = "Only administrators may create tokens for other users."

    def to_internal_value(self, data: Any) -> Any:
        # DRF reads any iterable as a list of names, so {"upstreams": {}} would mean "none".
        if isinstance(data, Mapping) and isinstance(data.get("upstreams"), Mapping | str):
            raise serializers.ValidationError({"upstreams": ["Expected a list of upstream names."]}, code="not_a_list")
        return super().to_internal_value(data)

    def get_status(self, token: APIToken) -> str:
        return token.status(timezone.now())

    def validate_allowed_cidrs(self, value: list[str]) -> list[str]:
        try:
            return normalise_cidrs(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc), code="invalid_cidr") from None

    def validate_scopes(self, value: list[str]) -> list[str]:
        return token_scopes.normalise_scopes(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        parent = request_token(self.context.get("request"))
        attrs["expires_at"] = self._expiry(attrs, parent)
        attrs.pop("expires_in_days", None)
        if attrs.pop("uses_management_api", False):
            if "scopes" in attrs:
                raise serializers.ValidationError(
                    {"management_api": ["Give scopes or management_api, not both."]}, code="scopes_twice"
                )
            attrs["scopes"] = list(token_scopes.SCOPES)
        if parent is not None:
            _check_within_scopes(attrs, parent, self.context["request"].user)
        return attrs

    @staticmethod
    def _expiry(attrs: dict[str, Any], parent: APIToken | None) -> Any:
        """``expires_at``, or now + ``expires_in_days``, or the default; within the maximum lifetime.
        The default for a token made by a token is at most the expiry of the one making it."""
        if "expires_at" in attrs and "expires_in_days" in attrs:
            raise serializers.ValidationError(
                {"expires_in_days": ["Give expires_at or expires_in_days, not both."]}, code="expiry_twice"
            )
        now = timezone.now()
        field = "expires_in_days" if "expires_in_days" in attrs else "expires_at"
        if "expires_in_days" in attrs:
            expires_at = now + timedelta(days=attrs["expires_in_days"])
        elif attrs.get("expires_at"):
            expires_at = attrs["expires_at"]
        else:
            expires_at = tokens.default_expiry(now)
            if parent is not None:
                expires_at = min(expires_at, parent.expires_at)
        try:
            tokens.check_expiry(expires_at, now=now, max_lifetime_days=settings.TOKEN_MAX_LIFETIME_DAYS)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({field: exc.messages}, code=exc.code) from None
        return expires_at


def _networks_within(networks: list[str], outer: list[str]) -> bool:
    parsed = [ipaddress.ip_network(cidr, strict=False) for cidr in outer]
    return bool(networks) and all(
        any(net.version == out.version and net.subnet_of(out) for out in parsed)  # type: ignore[arg-type]
        for net in map(ipaddress.ip_network, networks)
    )


def _check_within_scopes(attrs: dict[str, Any], parent: APIToken, user: Any) -> None:
    """A request authenticated by a token may not mint a broader one: a token must not be
    able to escape its own restrictions (upstreams, networks, scopes, expiry) through a new one."""
    errors = {}
    if not parent.all_upstreams:
        if attrs.get("user", user) != user:
            errors["user"] = ["The token making this request is limited to some upstreams: only its own user."]
        allowed = {upstream.pk for upstream in parent.upstreams.all()}
        if attrs.get("all_upstreams"):
            errors["all_upstreams"] = ["The token making this request is limited to some upstreams."]
        elif not {upstream.pk for upstream in attrs.get("upstreams", [])} <= allowed:
            errors["upstreams"] = ["Only upstreams the token making this request may use."]
    if parent.allowed_cidrs and not _networks_within(attrs.get("allowed_cidrs", []), parent.allowed_cidrs):
        errors["allowed_cidrs"] = [
            f"Only networks within those of the token making this request: {parent.allowed_cidrs}."
        ]
    beyond = set(attrs.get("scopes", ())) - token_scopes.effective(parent.scopes or ())
    if beyond:
        errors["scopes"] = [f"Scopes the token making this request lacks: {', '.join(sorted(beyond))}."]
    if attrs["expires_at"] > parent.expires_at:
        errors["expires_at"] = ["Not after the expiry of the token making this request."]
    if errors:
        raise serializers.ValidationError(errors, code="exceeds_token_scope")


class APITokenFilterSet(StrictFilterSet):
    user = django_filters.CharFilter(field_name="user__username")
    scope = django_filters.ChoiceFilter(
        choices=token_scopes.SCOPE_CHOICES, method="filter_scope", help_text="Tokens that were given this scope."
    )
    management_api = BooleanFilter(
        method="filter_management_api", help_text="Deprecated (use scope): tokens with any scope, or with none."
    )

    class Meta:
        model = APIToken
        fields = ("user", "scope", "management_api", "all_upstreams")

    def filter_scope(self, queryset: QuerySet[APIToken], name: str, value: str) -> QuerySet[APIToken]:
        return queryset.filter(scopes__contains=[value])

    def filter_management_api(self, queryset: QuerySet[APIToken], name: str, value: bool) -> QuerySet[APIToken]:
        return queryset.filter(scopes=[]) if value is False else queryset.exclude(scopes=[])


TOKEN_RESPONSE = {
    "url": "https://gate.example/api/tokens/5/", "id": 5, "key_id": "k3J9x2Qa", "label": "report job",
    "user": "alice", "status": "active", "created_at": "2026-03-01T10:00:00Z", "created_by": "alice",
    "expires_at": "2026-03-31T10:00:00Z", "revoked_at": None, "enabled": True, "all_upstreams": False,
    "upstreams": ["crm"], "scopes": [], "allowed_cidrs": [], "last_used_at": None, "last_used_ip": None,
    "management_api": False,
}  # fmt: skip
_token_example = OpenApiExample("A token", value=TOKEN_RESPONSE, response_only=True)


class CreatedTokenSerializer(APITokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The token itself: shown in this answer only.")

    class Meta(APITokenSerializer.Meta):
        fields = (*APITokenSerializer.Meta.fields, "token")


@extend_schema_view(
    list=extend_schema(summary="List API tokens", description="Yours; administrators see everyone's.",
                       examples=[_token_example]),
    retrieve=extend_schema(summary="One API token", examples=[_token_example]),
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
    revoke=extend_schema(summary="Revoke an API token", request=None, examples=[_token_example]),
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
        return queryset.filter(user=self.request.user)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        attrs = {"user": request.user, **serializer.validated_data}
        try:
            token, plaintext = tokens.create_token(**attrs, created_by=request.user, request=request)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from None
        data = {**self.get_serializer(token).data, "token": plaintext}
        # The plaintext exists nowhere else: keep it out of every cache.
        return Response(data, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        token = self.get_object()
        tokens.revoke_token(token, request=request)
        return Response(self.get_serializer(token).data)
