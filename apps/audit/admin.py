"""The audit trail in the Django admin: read-only, and fast at 10 M rows.

No query here scans the table: the list filters offer fixed vocabularies (no
``SELECT DISTINCT`` over the column), search is exact on indexed columns (no
``LIKE '%...%'``), and the paginator counts at most ``CappedCountPaginator.CAP``
rows (no ``COUNT(*)`` over everything).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from apps.audit import choices, events
from apps.audit.models import AuditEvent


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows (an index range scan of CAP entries at worst): the page
    links stop there, filters and search narrow the rest."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP + 1].count()  # type: ignore[attr-defined]  # a QuerySet here


class FixedChoicesFilter(admin.SimpleListFilter):
    """A filter over a known vocabulary, so the admin never asks the table for its values."""

    def vocabulary(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return self.vocabulary()

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        value = self.value()
        return queryset.filter(**{str(self.parameter_name): value}) if value else queryset


class EventTypeFilter(FixedChoicesFilter):
    title = "event type"
    parameter_name = "event_type"

    def vocabulary(self) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(events.EVENT_TYPES)]


class ReasonFilter(FixedChoicesFilter):
    title = "reason"
    parameter_name = "reason"

    def vocabulary(self) -> list[tuple[str, str]]:
        # Read at request time: the apps that record reasons declare them when they are ready.
        return [(code, code) for code in sorted(choices.RECORDED_REASONS)]


class ErrorFilter(FixedChoicesFilter):
    title = "upstream error"
    parameter_name = "error"

    def vocabulary(self) -> list[tuple[str, str]]:
        return [(code, code) for code in sorted(choices.RECORDED_ERRORS)]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is append-only, in the admin as everywhere."""

    list_display = (
        "occurred_at",
        "event_type",
        "request_id",
        "actor_username",
        "method",
        "upstream_name",
        "path",
        "decision",
        "reason",
        "status",
        "duration_ms",
    )
    list_filter = (("occurred_at", admin.DateFieldListFilter), "decision", EventTypeFilter, ReasonFilter, ErrorFilter)
    # "=" makes each an exact match: an index lookup, never a LIKE '%...%' scan.
    search_fields = ("=request_id", "=actor_username", "=upstream_name", "=token_key_id", "=source_ip")
    search_help_text = "Exact request id, username, upstream, token key id or client IP."
    ordering = ("-occurred_at", "-id")
    paginator = CappedCountPaginator
    show_full_result_count = False  # No COUNT(*) over a large table on every page.
    list_per_page = 50
    # Captured evidence is read through the API only, where each read is audited (apps.audit.api.evidence).
    exclude = ("evidence",)

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False
