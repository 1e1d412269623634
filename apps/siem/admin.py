from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.siem.models import SinkCursor


@admin.register(SinkCursor)
class SinkCursorAdmin(admin.ModelAdmin):
    """Where each SIEM sink stands, read-only: only the streamer moves a cursor."""

    list_display = ("name", "kind", "low_water", "checkpoint_through", "events_sent", "last_sent_at",
                    "last_lag_seconds", "last_error")  # fmt: skip
    readonly_fields = [f.name for f in SinkCursor._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
