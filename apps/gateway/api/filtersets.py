"""Query-string filters of the gateway's API."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from apps.core.filtersets import BooleanFilter, StrictFilterSet
from apps.gateway import scopes as token_scopes
from apps.gateway.models import AccessRule, APIToken, Upstream


class UpstreamFilterSet(StrictFilterSet):
    class Meta:
        model = Upstream
        fields = ("name", "enabled", "internal")


class AccessRuleFilterSet(StrictFilterSet):
    upstream = django_filters.CharFilter(field_name="upstream__name")
    user = django_filters.CharFilter(field_name="user__username")
    group = django_filters.CharFilter(field_name="group__name")

    class Meta:
        model = AccessRule
        fields = ("upstream", "user", "group", "subject", "effect", "enabled")


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
