from typing import Any

from django.contrib import admin

from apps.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is append-only, in the admin as everywhere."""

    list_display = (
        "occurred_at",
        "request_id",
        "actor_username",
        "method",
        "upstream_name",
        "path",
        "decision",
        "reason",
        "status",
    )
    list_filter = ("decision", "reason")
    search_fields = ("=request_id", "=actor_username", "=upstream_name")
    show_full_result_count = False  # No COUNT(*) over a large table on every page.

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False
