from rest_framework import viewsets
from rest_framework.permissions import IsAdminUser

from apps.gateway.api.serializers import AccessRuleSerializer, UpstreamSerializer
from apps.gateway.filtersets import AccessRuleFilterSet
from apps.gateway.models import AccessRule, Upstream


class UpstreamViewSet(viewsets.ModelViewSet):
    queryset = Upstream.objects.all()
    serializer_class = UpstreamSerializer
    permission_classes = [IsAdminUser]
    filterset_fields = ("name", "enabled")


class AccessRuleViewSet(viewsets.ModelViewSet):
    queryset = AccessRule.objects.select_related("upstream", "user", "group")
    serializer_class = AccessRuleSerializer
    permission_classes = [IsAdminUser]
    filterset_class = AccessRuleFilterSet
