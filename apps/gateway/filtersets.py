import django_filters

from apps.core.filtersets import StrictFilterSet
from apps.gateway.models import AccessRule, Upstream


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
