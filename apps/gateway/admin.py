from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User

from apps.audit import events
from apps.audit.acting import Acting
from apps.gateway import actions, admin_tokens  # noqa: F401 (registers the token admin)
from apps.gateway.models import AccessRule, Upstream


class AuditedAdmin(admin.ModelAdmin):
    """Admin changes go through apps.gateway.actions, like API changes: one audit event each."""

    event_types: dict[str, str]

    def save_model(self, request: Any, obj: Any, form: Any, change: bool) -> None:
        before = actions.snapshot(type(obj).objects.get(pk=obj.pk)) if change else {}
        kind = "updated" if change else "created"
        actions.save(obj, event_type=self.event_types[kind], acting=Acting.from_request(request), before=before)

    def delete_model(self, request: Any, obj: Any) -> None:
        actions.delete(obj, event_type=self.event_types["deleted"], acting=Acting.from_request(request))

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


class UpstreamForm(forms.ModelForm):
    # Write-only: the form never shows the stored secret; leaving it empty keeps it.
    credential_value = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    identity_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))

    class Meta:
        model = Upstream
        fields = (
            "name", "base_url", "enabled", "internal", "description", "connect_timeout", "read_timeout",
            "total_timeout", "max_request_bytes", "max_response_bytes", "websocket_idle_timeout",
            "websocket_max_duration", "allowed_methods", "preserve_host",
            "forward_cookies", "forward_rewrite_headers", "fail_open", "sensitive", "credential_header",
            "credential_value", "identity_key", "capture_evidence", "evidence_max_bytes", "evidence_redact_fields",
            "evidence_redact_headers",
        )  # fmt: skip

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean returns cleaned_data
        for secret in ("credential_value", "identity_key"):
            if not cleaned.get(secret) and self.instance.pk:
                cleaned[secret] = getattr(self.instance, secret)
        return cleaned


@admin.register(Upstream)
class UpstreamAdmin(AuditedAdmin):
    form = UpstreamForm
    list_display = ("name", "base_url", "enabled", "internal", "connect_timeout", "read_timeout", "updated_at")
    list_filter = ("enabled", "internal", "capture_evidence")
    search_fields = ("name", "base_url")
    event_types = {"created": events.UPSTREAM_CREATED, "updated": events.UPSTREAM_UPDATED,
                   "deleted": events.UPSTREAM_DELETED}  # fmt: skip


@admin.register(AccessRule)
class AccessRuleAdmin(AuditedAdmin):
    list_display = ("id", "upstream", "subject", "user", "group", "effect", "priority", "methods", "path_pattern",
                    "enabled")  # fmt: skip
    list_filter = ("enabled", "effect", "subject", "capture_evidence", "upstream")
    list_select_related = ("upstream", "user", "group")
    autocomplete_fields = ("user", "group")
    raw_id_fields = ("upstream",)
    event_types = {"created": events.RULE_CREATED, "updated": events.RULE_UPDATED, "deleted": events.RULE_DELETED}


# Users change through the same audited path (their password hash is masked in the event).
admin.site.unregister(User)


@admin.register(User)
class AuditedUserAdmin(AuditedAdmin, UserAdmin):
    event_types = {"created": events.USER_CREATED, "updated": events.USER_UPDATED, "deleted": events.USER_DELETED}

    def save_related(self, request: Any, form: Any, formsets: Any, change: bool) -> None:
        # Group membership is many-to-many, saved after the user row: audit it here, as a change
        # of its own, since it decides which group rules apply to the user.
        before = sorted(form.instance.groups.values_list("name", flat=True)) if change else []
        super().save_related(request, form, formsets, change)
        after = sorted(form.instance.groups.values_list("name", flat=True))
        if before != after:
            # The admin's change view holds one transaction for the user, its groups and both events.
            events.record_change(
                events.USER_UPDATED,
                form.instance,
                acting=Acting.from_request(request),
                changes={"groups": [before, after]},
            )
