from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from apps.audit.api.views import AuditEventViewSet, AuditStatsView, AuditVerifyView
from apps.audit.views import dashboard
from apps.gateway.api.introspection import IntrospectView
from apps.gateway.api.tokens import APITokenViewSet
from apps.gateway.api.views import AccessRuleViewSet, PolicyCheckView, UpstreamViewSet
from apps.gateway.views import gateway
from auditgate import errors
from auditgate.views import HealthView, MeView

router = DefaultRouter()
router.register("upstreams", UpstreamViewSet)
router.register("rules", AccessRuleViewSet)
router.register("tokens", APITokenViewSet, basename="apitoken")
router.register("audit/events", AuditEventViewSet)

urlpatterns = [
    path("", RedirectView.as_view(url="/api/", permanent=False)),
    # Everything under /gw reaches the gateway view, which reads the raw request URI itself:
    # Apache has already decoded and merged dot segments in the path Django routes on, so a
    # request that no longer looks like /gw/<upstream>/... must still be refused and audited.
    re_path(r"^gw(?:/(?P<upstream>[^/]*))?(?P<path>/[\s\S]*)?$", gateway, name="gateway"),
    path("api/health/", HealthView.as_view(), name="health"),
    path("api/me/", MeView.as_view(), name="me"),
    path("api/policy/check", PolicyCheckView.as_view(), name="policy-check"),
    # Upstreams call this back while a gateway request waits on them: the vhost serves
    # it from the API daemon group, never the gateway's (apps.gateway.introspection).
    path("api/introspect", IntrospectView.as_view(), name="introspect"),
    path("api/audit/verify", AuditVerifyView.as_view(), name="audit-verify"),
    path("api/audit/stats", AuditStatsView.as_view(), name="audit-stats"),
    path("api/auth/", include("rest_framework.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/schema/swagger-ui/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/schema/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/", include(router.urls)),
    path("audit/dashboard/", dashboard, name="audit-dashboard"),
    path("admin/", admin.site.urls),
]

handler400 = errors.bad_request
handler403 = errors.permission_denied
handler404 = errors.not_found
handler500 = errors.server_error
