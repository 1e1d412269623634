from rest_framework import serializers

from apps.audit.models import AuditEvent


class AuditEventSerializer(serializers.HyperlinkedModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="auditevent-detail")
    actor = serializers.IntegerField(source="actor_id", read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = (
            "url", "id", "event_type", "occurred_at", "duration_ms", "request_id", "actor", "actor_username",
            "token_key_id", "source_ip", "user_agent", "upstream_id", "upstream_name", "method", "path", "query",
            "decision", "reason", "rule_id", "status", "upstream_status", "error", "injected_credential",
            "request_bytes", "response_bytes", "object_type", "object_id", "object_repr", "changes",
        )  # fmt: skip
        read_only_fields = fields
