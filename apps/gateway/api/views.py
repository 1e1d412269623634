from typing import Any

from django.utils import timezone
from rest_framework import viewsets
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from apps.audit import events
from apps.gateway import actions
from apps.gateway.api.serializers import AccessRuleSerializer, PolicyCheckSerializer, UpstreamSerializer
from apps.gateway.filtersets import AccessRuleFilterSet
from apps.gateway.models import AccessRule, Upstream
from apps.gateway.policy import AccessRequest, decide


class AuditedModelViewSet(viewsets.ModelViewSet):
    """Every create, update and delete is written with its audit event, in one transaction."""

    event_types: dict[str, str]

    def perform_create(self, serializer: Any) -> None:
        actions.save(None, event_type=self.event_types["created"], request=self.request, before={},
                     save=serializer.save)  # fmt: skip

    def perform_update(self, serializer: Any) -> None:
        before = actions.snapshot(serializer.instance)
        actions.save(None, event_type=self.event_types["updated"], request=self.request, before=before,
                     save=serializer.save)  # fmt: skip

    def perform_destroy(self, instance: Any) -> None:
        actions.delete(instance, event_type=self.event_types["deleted"], request=self.request)


class UpstreamViewSet(AuditedModelViewSet):
    queryset = Upstream.objects.all()
    serializer_class = UpstreamSerializer
    permission_classes = [IsAdminUser]
    filterset_fields = ("name", "enabled", "internal")
    event_types = {"created": events.UPSTREAM_CREATED, "updated": events.UPSTREAM_UPDATED,
                   "deleted": events.UPSTREAM_DELETED}  # fmt: skip


class AccessRuleViewSet(AuditedModelViewSet):
    queryset = AccessRule.objects.select_related("upstream", "user", "group")
    serializer_class = AccessRuleSerializer
    permission_classes = [IsAdminUser]
    filterset_class = AccessRuleFilterSet
    event_types = {"created": events.RULE_CREATED, "updated": events.RULE_UPDATED, "deleted": events.RULE_DELETED}


class PolicyCheckView(APIView):
    """Dry run: would this user, with this method, on this upstream and path, from this
    address, at this time, be allowed, and by which rule?  Nothing is forwarded."""

    permission_classes = [IsAdminUser]
    serializer_class = PolicyCheckSerializer

    def post(self, request: Any) -> Response:
        serializer = PolicyCheckSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
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
        rule_url = reverse("accessrule-detail", args=[decision.rule_id], request=request) if decision.rule_id else None
        return Response(
            {"allowed": decision.allowed, "code": decision.reason, "rule": decision.rule_id, "rule_url": rule_url}
        )
