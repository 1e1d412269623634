from django.urls import path
from rest_framework.routers import DefaultRouter

from apps.gateway.api.views import AccessRuleViewSet, APITokenViewSet, IntrospectView, PolicyCheckView, UpstreamViewSet

app_name = "gateway-api"
# The API root lists every app's collections: the site's urls serve it, not each router.
router = DefaultRouter()
router.include_root_view = False
router.register("upstreams", UpstreamViewSet)
router.register("rules", AccessRuleViewSet)
router.register("tokens", APITokenViewSet, basename="apitoken")

urlpatterns = [
    path("policy/check", PolicyCheckView.as_view(), name="policy-check"),
    # Upstreams call this back while a gateway request waits on them: the vhost serves
    # it from the API daemon group, never the gateway's (apps.gateway.introspection).
    path("introspect", IntrospectView.as_view(), name="introspect"),
    *router.urls,
]
