"""``/api/tokens/``: users manage their own API tokens, administrators anyone's.

The plaintext token is in the create response only; no other response has it or
its hash.  ``POST .../revoke/`` revokes (the row stays, for the audit trail, and there
is no ``DELETE``); a token is never updated, so scopes and secret stay as created.
A request authenticated by a token cannot create a token with wider upstream or
network scopes than its own.
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
from rest_framework.request import Request
from rest_framework.response import Response

from apps.gateway import tokens
from apps.gateway.models import APIToken, Upstream
from apps.gateway.models.tokens import MAX_CIDRS, SHOWN_FIELDS, normalise_cidrs
from auditgate.fields import STRICT_FIELD_MAPPING, StrictCharField
from auditgate.filtersets import StrictFilterSet


class APITokenSerializer(serializers.ModelSerializer):
    serializer_field_mapping = STRICT_FIELD_MAPPING
    url = serializers.HyperlinkedIdentityField(view_name="apitoken-detail")
    user = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.all(), required=False, help_text="Admins only."
    )
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Null when made on the host (manage.py)."
    )
    status = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField(required=False, help_text="Default and maximum: now + the maximum lifetime.")
    # The upper bound only keeps the date computable; the deployment's maximum lifetime applies too.
    expires_in_days = serializers.IntegerField(write_only=True, required=False, min_value=1, max_value=36500)
    upstreams = serializers.SlugRelatedField(
        slug_field="name", queryset=Upstream.objects.all(), many=True, required=False
    )
    allowed_cidrs = serializers.ListField(child=StrictCharField(max_length=64), required=False, max_length=MAX_CIDRS)

    class Meta:
        model = APIToken
        # expires_in_days is write-only: another way to give expires_at on creation.
        fields = ("url", "id", *SHOWN_FIELDS, "expires_in_days")
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

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["expires_at"] = self._expiry(attrs)
        attrs.pop("expires_in_days", None)
        request = self.context.get("request")
        if isinstance(getattr(request, "auth", None), APIToken):
            _check_within_scopes(attrs, request.auth)
        return attrs

    @staticmethod
    def _expiry(attrs: dict[str, Any]) -> Any:
        """``expires_at``, or now + ``expires_in_days``, or the default; within the maximum lifetime."""
        if "expires_at" in attrs and "expires_in_days" in attrs:
            raise serializers.ValidationError(
                {"expires_in_days": ["Give expires_at or expires_in_days, not both."]}, code="expiry_twice"
            )
        now = timezone.now()
        field = "expires_in_days" if "expires_in_days" in attrs else "expires_at"
        if "expires_in_days" in attrs:
            expires_at = now + timedelta(days=attrs["expires_in_days"])
        else:
            expires_at = attrs.get("expires_at") or tokens.default_expiry(now)
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


def _check_within_scopes(attrs: dict[str, Any], parent: APIToken) -> None:
    """A request authenticated by a token may not mint a broader one: an upstream- or
    network-restricted token must not be able to escape its own restrictions."""
    errors = {}
    if not parent.all_upstreams:
        allowed = {upstream.pk for upstream in parent.upstreams.all()}
        if attrs.get("all_upstreams"):
            errors["all_upstreams"] = ["The token making this request is limited to some upstreams."]
        elif not {upstream.pk for upstream in attrs.get("upstreams", [])} <= allowed:
            errors["upstreams"] = ["Only upstreams the token making this request may use."]
    if parent.allowed_cidrs and not _networks_within(attrs.get("allowed_cidrs", []), parent.allowed_cidrs):
        errors["allowed_cidrs"] = [
            f"Only networks within those of the token making this request: {parent.allowed_cidrs}."
        ]
    if errors:
        raise serializers.ValidationError(errors, code="exceeds_token_scope")


class APITokenFilterSet(StrictFilterSet):
    user = django_filters.CharFilter(field_name="user__username")

    class Meta:
        model = APIToken
        fields = ("user", "management_api", "all_upstreams")


TOKEN_RESPONSE = {
    "url": "https://gate.example/api/tokens/5/", "id": 5, "key_id": "k3J9x2Qa", "label": "report job",
    "user": "alice", "status": "active", "created_at": "2026-03-01T10:00:00Z", "created_by": "alice",
    "expires_at": "2026-03-31T10:00:00Z", "revoked_at": None, "enabled": True, "all_upstreams": False,
    "upstreams": ["crm"], "management_api": False, "allowed_cidrs": [], "last_used_at": None, "last_used_ip": None,
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

    queryset = APIToken.objects.none()  # for the schema; get_queryset() decides what a user sees

    def get_queryset(self) -> QuerySet[APIToken]:
        queryset = APIToken.objects.select_related("user", "created_by").prefetch_related("upstreams")
        if self.request.user.is_staff:
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
