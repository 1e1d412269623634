from django.contrib import admin

from apps.gateway.models import AccessRule, Upstream


@admin.register(Upstream)
class UpstreamAdmin(admin.ModelAdmin):
    list_display = ("name", "base_url", "enabled", "connect_timeout", "read_timeout", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("name", "base_url")


@admin.register(AccessRule)
class AccessRuleAdmin(admin.ModelAdmin):
    list_display = ("id", "upstream", "user", "group", "methods", "path_prefix", "enabled")
    list_filter = ("enabled", "upstream")
    list_select_related = ("upstream", "user", "group")
    autocomplete_fields = ("user", "group")
    raw_id_fields = ("upstream",)
