from rest_framework import serializers

from apps.audit.models import AuditEvent


class AuditEventSerializer(serializers.HyperlinkedModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="auditevent-detail")
    actor = serializers.IntegerField(source="actor_id", read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = (
            "url",
            "id",
            "occurred_at",
            "duration_ms",
            "request_id",
            "actor",
            "actor_username",
            "source_ip",
            "user_agent",
            "upstream_id",
            "upstream_name",
            "method",
            "path",
            "query",
            "decision",
            "reason",
            "rule_id",
            "status",
            "upstream_status",
            "error",
            "request_bytes",
            "response_bytes",
        )
        read_only_fields = fields
