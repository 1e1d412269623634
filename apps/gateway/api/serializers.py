from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from apps.core.fields import STRICT_FIELD_MAPPING, StrictCharField, StrictDateTimeField
from apps.gateway import paths
from apps.gateway.choices import HTTP_METHODS
from apps.gateway.models import AccessRule, Upstream
from apps.gateway.models.rules import Subject
from apps.gateway.targets import check_base_url
from apps.gateway.validators import validate_cidrs

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

    class Meta:
        model = Upstream
        fields = (
            "url", "id", "name", "base_url", "enabled", "internal", "description",
            "connect_timeout", "read_timeout", "total_timeout", "max_request_bytes", "max_response_bytes",
            "allowed_methods", "preserve_host", "forward_cookies", "forward_rewrite_headers", "fail_open",
            "credential_header", "credential_value", "has_credential", "identity_key", "has_identity_key",
            "created_at", "updated_at",
        )  # fmt: skip

    def get_has_credential(self, upstream: Upstream) -> bool:
        return bool(upstream.credential_header and upstream.credential_value)

    def get_has_identity_key(self, upstream: Upstream) -> bool:
        return bool(upstream.identity_key)

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
            "valid_from", "valid_until", "enabled", "description", "created_at", "updated_at",
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
