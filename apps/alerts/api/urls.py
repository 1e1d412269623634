from rest_framework.routers import DefaultRouter

from apps.alerts.api.views import AlertRuleViewSet, AlertViewSet

app_name = "alerts-api"
router = DefaultRouter()
router.include_root_view = False  # the site's API root lists every app's collections
# The rules first: "alerts/rules/" must not be read as the alert with the id "rules".
router.register("alerts/rules", AlertRuleViewSet)
router.register("alerts", AlertViewSet)

urlpatterns = router.urls
