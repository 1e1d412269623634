"""Admin for API tokens: list, search, filter, create (the plaintext is shown once,
in a message) and revoke.  Tokens are never edited and never deleted here: the
secret and its hash are never shown, and a revoked row stays for the audit trail.
Imported by ``apps/gateway/admin.py``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from apps.audit.acting import Acting
from apps.gateway import scopes as token_scopes
from apps.gateway import tokens
from apps.gateway.choices import TokenStatus
from apps.gateway.models import APIToken
from apps.gateway.models.tokens import SHOWN_FIELDS, normalise_cidrs

_CREATE_FIELDS = ("user", "label", "expires_at", "all_upstreams", "upstreams", "scopes", "allowed_cidrs")
_VIEW_FIELDS = SHOWN_FIELDS


class APITokenCreationForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=token_scopes.SCOPE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="What it may do on the management API (/api/); none: the gateway only.",
    )

    class Meta:
        model = APIToken
        fields = _CREATE_FIELDS

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data["expires_at"]
        tokens.check_expiry(expires_at, now=timezone.now(), max_lifetime_days=settings.TOKEN_MAX_LIFETIME_DAYS)
        return expires_at

    def clean_allowed_cidrs(self) -> list[str]:
        value = self.cleaned_data["allowed_cidrs"] or []
        if not isinstance(value, list):
            raise forms.ValidationError('A list of networks, e.g. ["10.0.0.0/8"].', code="invalid_cidr")
        try:
            return normalise_cidrs(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid_cidr") from None


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(TokenStatus.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[APIToken]) -> QuerySet[APIToken]:
        now = timezone.now()
        live = queryset.filter(revoked_at__isnull=True)
        by_status: dict[str | None, QuerySet[APIToken]] = {
            TokenStatus.ACTIVE: live.filter(expires_at__gt=now, enabled=True),
            TokenStatus.EXPIRED: live.filter(expires_at__lte=now),
            TokenStatus.REVOKED: queryset.filter(revoked_at__isnull=False),
            TokenStatus.DISABLED: live.filter(expires_at__gt=now, enabled=False),
        }
        return by_status.get(self.value(), queryset)


class ScopeFilter(admin.SimpleListFilter):
    title = "scope"
    parameter_name = "scope"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(token_scopes.SCOPE_CHOICES)

    def queryset(self, request: HttpRequest, queryset: QuerySet[APIToken]) -> QuerySet[APIToken]:
        if self.value() in token_scopes.SCOPES:
            return queryset.filter(scopes__contains=[self.value()])
        return queryset


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    list_display = (
        "key_id",
        "label",
        "user",
        "status",
        "expires_at",
        "last_used_at",
        "scopes",
        "all_upstreams",
    )
    list_filter = (StatusFilter, ScopeFilter, "all_upstreams", "enabled")
    list_select_related = ("user",)
    search_fields = ("key_id", "label", "user__username")
    autocomplete_fields = ("user", "upstreams")
    actions = ("revoke_selected",)

    @admin.display(description="status")
    def status(self, token: APIToken) -> str:
        return token.status(timezone.now()).label

    def get_fields(self, request: HttpRequest, obj: APIToken | None = None) -> tuple[str, ...]:
        return _CREATE_FIELDS if obj is None else _VIEW_FIELDS

    def get_form(self, request: HttpRequest, obj: APIToken | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = APITokenCreationForm
        return super().get_form(request, obj, change, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"expires_at": tokens.default_expiry(), **super().get_changeform_initial_data(request)}

    def has_change_permission(self, request: HttpRequest, obj: APIToken | None = None) -> bool:
        return False  # Tokens are immutable; the change page is read-only.

    def has_delete_permission(self, request: HttpRequest, obj: APIToken | None = None) -> bool:
        return False  # Revoke instead: the row stays for the audit trail.

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        codename = get_permission_codename("change", self.opts)
        return request.user.has_perm(f"{self.opts.app_label}.{codename}")

    def save_model(self, request: HttpRequest, obj: APIToken, form: Any, change: bool) -> None:
        token, plaintext = tokens.create_token(
            **{name: form.cleaned_data[name] for name in _CREATE_FIELDS},
            created_by=request.user,
            acting=Acting.from_request(request),
        )
        obj.pk = token.pk
        obj.refresh_from_db()  # so the admin's log entry and messages name the new row
        messages.warning(request, f"Copy the token {obj.key_id} now, it will not be shown again: {plaintext}")

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # create_token already set the upstreams.

    @admin.action(description="Revoke the selected tokens", permissions=("revoke",))
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[APIToken]) -> None:
        acting = Acting.from_request(request)
        revoked = sum(tokens.revoke_token(token, acting=acting) for token in queryset)
        self.message_user(request, f"Revoked {revoked} token(s); already revoked ones were left as they were.")
