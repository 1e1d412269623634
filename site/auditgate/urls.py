"""The site's routes: each app owns its own (``apps/<app>/urls.py``, ``apps/<app>/api/urls.py``);
here they are only included, beside the API root, the schema and the admin."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import APIRootView
from rest_framework.urlpatterns import format_suffix_patterns

from apps.core import errors
from apps.gateway import django_refusals

# The collections the browsable API's root lists, in this order.
API_ROOT = {
    "upstreams": "gateway-api:upstream-list",
    "rules": "gateway-api:accessrule-list",
    "tokens": "gateway-api:apitoken-list",
    "audit/events": "audit-api:auditevent-list",
    "alerts": "alerts-api:alert-list",
}

_PAGE = ["get", "head"]

urlpatterns = [
    path("", RedirectView.as_view(url="/api/", permanent=False)),
    path("", include("apps.gateway.urls")),
    path("api/", include("apps.core.api.urls")),
    path("api/", include("apps.gateway.api.urls")),
    path("api/", include("apps.audit.api.urls")),
    path("api/", include("apps.alerts.api.urls")),
    path("api/auth/", include("rest_framework.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Pages, not API resources: GET and HEAD only (OPTIONS would try to render DRF's metadata as the page).
    path(
        "api/schema/swagger-ui/",
        SpectacularSwaggerView.as_view(url_name="schema", http_method_names=_PAGE),
        name="swagger-ui",
    ),
    path("api/schema/redoc/", SpectacularRedocView.as_view(url_name="schema", http_method_names=_PAGE), name="redoc"),
    path(
        "api/",
        include(format_suffix_patterns([path("", APIRootView.as_view(api_root_dict=API_ROOT), name="api-root")])),
    ),
    path("", include("apps.audit.urls")),
    path("admin/", admin.site.urls),
]

handler400 = django_refusals.bad_request
handler403 = errors.permission_denied
handler404 = errors.not_found
handler500 = errors.server_error
