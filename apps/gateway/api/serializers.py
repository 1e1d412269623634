from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from rest_framework import serializers

from apps.core.fields import (
    STRICT_FIELD_MAPPING,
    StrictBooleanField,
    StrictCharField,
    StrictDateTimeField,
    StrictStringMixin,
)
from apps.core.secrets_at_rest import is_set
from apps.gateway import paths, tokens
from apps.gateway import scopes as token_scopes
from apps.gateway.api.permissions import request_token
from apps.gateway.choices import HTTP_METHODS, Subject
from apps.gateway.models import AccessRule, APIToken, Upstream
from apps.gateway.models.tokens import MAX_CIDRS, SHOWN_FIELDS, normalise_cidrs
from apps.gateway.targets import check_base_url
from apps.gateway.validators import MAX_REDACTED_NAMES, validate_cidrs, validate_header_name

# Related objects are named in a text input of the browsable API's form, never a dropdown of
# every user or upstream (which would also show them to anyone who may open the form).
NAME_INPUT = {"base_template": "input.html"}


def _ordered_methods(value: list[str]) -> list[str]:
    return sorted(set(value), key=HTTP_METHODS.index)


class UpstreamSerializer(serializers.HyperlinkedModelSerializer):
    serializer_field_mapping = STRICT_FIELD_MAPPING
    url = serializers.HyperlinkedIdentityField(view_name="gateway-api:upstream-detail")
    allowed_methods = serializers.ListField(
        child=serializers.ChoiceField(choices=HTTP_METHODS), allow_empty=False, required=False
    )
    # Secrets are write-only: the API says whether one is set, never what it is.
    credential_value = StrictCharField(write_only=True, required=False, allow_blank=True, max_length=1000)
    identity_key = StrictCharField(write_only=True, required=False, allow_blank=True, max_length=200)
    has_credential = serializers.SerializerMethodField()
    has_identity_key = serializers.SerializerMethodField()
    # Evidence capture (apps.audit.evidence): what is redacted before a body is stored.
    evidence_redact_fields = serializers.ListField(
        child=StrictCharField(max_length=100), max_length=MAX_REDACTED_NAMES, required=False,
        help_text="JSON keys and form fields redacted in captured bodies, at any depth, any letter case.",
    )  # fmt: skip
    evidence_redact_headers = serializers.ListField(
        child=StrictCharField(max_length=100, validators=[validate_header_name]), max_length=MAX_REDACTED_NAMES,
        required=False, help_text="Headers redacted in captured evidence, besides those always redacted.",
    )  # fmt: skip

    class Meta:
        model = Upstream
        fields = (
            "url", "id", "name", "base_url", "enabled", "internal", "description",
            "connect_timeout", "read_timeout", "total_timeout", "max_request_bytes", "max_response_bytes",
            "websocket_idle_timeout", "websocket_max_duration", "allowed_methods", "preserve_host", "forward_cookies",
            "forward_rewrite_headers", "fail_open", "sensitive",
            "credential_header", "credential_value", "has_credential", "identity_key", "has_identity_key",
            "capture_evidence", "evidence_max_bytes", "evidence_redact_fields", "evidence_redact_headers",
            "created_at", "updated_at",
        )  # fmt: skip

    # A secret stored under a key the ring lacks is still set (apps.core.secrets_at_rest.UnreadableSecret).
    def get_has_credential(self, upstream: Upstream) -> bool:
        return bool(upstream.credential_header and is_set(upstream.credential_value))

    def get_has_identity_key(self, upstream: Upstream) -> bool:
        return is_set(upstream.identity_key)

    def validate_allowed_methods(self, value: list[str]) -> list[str]:
        return _ordered_methods(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        base_url = attrs.get("base_url", getattr(self.instance, "base_url", ""))
        internal = attrs.get("internal", getattr(self.instance, "internal", False))
        try:
            check_base_url(base_url, internal=internal)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"base_url": exc.messages}, code=exc.code) from None
        header = attrs.get("credential_header", getattr(self.instance, "credential_header", ""))
        value = attrs.get("credential_value", getattr(self.instance, "credential_value", ""))
        if bool(header) != bool(value):
            raise serializers.ValidationError(
                {"credential_header": ["Give both credential_header and credential_value, or neither."]}
            )
        return attrs


class AccessRuleSerializer(serializers.ModelSerializer):
    serializer_field_mapping = STRICT_FIELD_MAPPING
    url = serializers.HyperlinkedIdentityField(view_name="gateway-api:accessrule-detail")
    upstream = serializers.SlugRelatedField(slug_field="name", queryset=Upstream.objects.all(), style=NAME_INPUT)
    user = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.all(), required=False, allow_null=True,
        style=NAME_INPUT,
    )  # fmt: skip
    group = serializers.SlugRelatedField(
        slug_field="name", queryset=Group.objects.all(), required=False, allow_null=True, style=NAME_INPUT
    )
    methods = serializers.ListField(child=serializers.ChoiceField(choices=HTTP_METHODS), required=False)
    source_cidrs = serializers.ListField(
        child=StrictCharField(max_length=49), required=False, validators=[validate_cidrs]
    )
    days = serializers.ListField(child=serializers.IntegerField(min_value=0, max_value=6), required=False)

    class Meta:
        model = AccessRule
        fields = (
            "url", "id", "upstream", "subject", "user", "group", "effect", "priority", "methods",
            "path_match", "path_pattern", "case_insensitive", "source_cidrs", "days", "start_time", "end_time",
            "time_zone",
            "valid_from", "valid_until", "enabled", "capture_evidence", "description", "created_at", "updated_at",
        )  # fmt: skip

    def validate_methods(self, value: list[str]) -> list[str]:
        return _ordered_methods(value)

    def validate_days(self, value: list[int]) -> list[int]:
        return sorted(set(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        def current(name: str) -> Any:
            return attrs.get(name, getattr(self.instance, name, None))

        subject = current("subject") or Subject.USER
        user, group = current("user"), current("group")
        expected = {Subject.USER: (True, False), Subject.GROUP: (False, True), Subject.ANY: (False, False)}[subject]
        if (user is not None, group is not None) != expected:
            raise serializers.ValidationError(
                {"subject": [f"A '{subject}' rule needs " + {
                    Subject.USER: "a user and no group.", Subject.GROUP: "a group and no user.",
                    Subject.ANY: "neither user nor group.",
                }[subject]]},
                code="subject",
            )  # fmt: skip
        if (current("start_time") is None) != (current("end_time") is None):
            raise serializers.ValidationError({"start_time": ["Give both start_time and end_time, or neither."]})
        valid_from, valid_until = current("valid_from"), current("valid_until")
        if valid_from and valid_until and valid_from >= valid_until:
            raise serializers.ValidationError({"valid_until": ["valid_until must be after valid_from."]})
        try:
            paths.normalise(current("path_pattern") or "/")
        except paths.InvalidPath as exc:
            raise serializers.ValidationError({"path_pattern": [f"Invalid pattern: {exc}."]}) from None
        return attrs


class PolicyCheckSerializer(serializers.Serializer):
    """The request a dry run asks about."""

    user = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.all(), style=NAME_INPUT
    )
    upstream = serializers.SlugRelatedField(slug_field="name", queryset=Upstream.objects.all(), style=NAME_INPUT)
    method = serializers.ChoiceField(choices=HTTP_METHODS)
    path = StrictCharField(max_length=2000)
    source_ip = serializers.IPAddressField(required=False, allow_null=True)
    at = StrictDateTimeField(required=False, help_text="Default: now.")

    def validate_path(self, value: str) -> str:
        try:
            return paths.normalise(value)
        except paths.InvalidPath as exc:
            raise serializers.ValidationError(f"Invalid path: {exc}.") from None


class ScopeField(StrictStringMixin, serializers.ChoiceField):
    default_error_messages = {"not_a_string": "Expected a string."}


class APITokenSerializer(serializers.ModelSerializer):
    serializer_field_mapping = STRICT_FIELD_MAPPING
    url = serializers.HyperlinkedIdentityField(view_name="gateway-api:apitoken-detail")
    user = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.all(), required=False, help_text="Admins only."
    )
    created_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
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
            user_field: Any = self.fields["user"]
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


class CreatedTokenSerializer(APITokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The token itself: shown in this answer only.")

    class Meta(APITokenSerializer.Meta):
        fields = (*APITokenSerializer.Meta.fields, "token")  # type: ignore[assignment]
