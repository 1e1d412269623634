from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework import serializers

from apps.gateway.choices import HTTP_METHODS
from apps.gateway.models import AccessRule, Upstream


class UpstreamSerializer(serializers.HyperlinkedModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="upstream-detail")

    class Meta:
        model = Upstream
        fields = (
            "url",
            "id",
            "name",
            "base_url",
            "enabled",
            "connect_timeout",
            "read_timeout",
            "description",
            "created_at",
            "updated_at",
        )


class AccessRuleSerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="accessrule-detail")
    upstream = serializers.SlugRelatedField(slug_field="name", queryset=Upstream.objects.all())
    user = serializers.SlugRelatedField(
        slug_field="username", queryset=get_user_model().objects.all(), required=False, allow_null=True
    )
    group = serializers.SlugRelatedField(
        slug_field="name", queryset=Group.objects.all(), required=False, allow_null=True
    )
    methods = serializers.ListField(child=serializers.ChoiceField(choices=HTTP_METHODS), allow_empty=False)

    class Meta:
        model = AccessRule
        fields = (
            "url",
            "id",
            "upstream",
            "user",
            "group",
            "methods",
            "path_prefix",
            "enabled",
            "description",
            "created_at",
            "updated_at",
        )

    def validate_methods(self, value: list[str]) -> list[str]:
        return sorted(set(value), key=HTTP_METHODS.index)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user = attrs.get("user", getattr(self.instance, "user", None))
        group = attrs.get("group", getattr(self.instance, "group", None))
        if (user is None) == (group is None):
            raise serializers.ValidationError(
                {"non_field_errors": ["Give exactly one subject: a user or a group."]}, code="subject"
            )
        return attrs
