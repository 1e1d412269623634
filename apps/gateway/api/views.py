from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from apps.audit import events
from apps.gateway import actions
from apps.gateway import scopes as token_scopes
from apps.gateway.api.permissions import (
    TokenScope,
    check_upstream,
    limit_to_token_upstreams,
    refuse,
    token_upstream_ids,
)
from apps.gateway.api.schema import RULE_REQUEST, RULE_RESPONSE, UPSTREAM_REQUEST, UPSTREAM_RESPONSE, crud_schema
from apps.gateway.api.serializers import AccessRuleSerializer, PolicyCheckSerializer, UpstreamSerializer
from apps.gateway.filtersets import AccessRuleFilterSet, UpstreamFilterSet
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
