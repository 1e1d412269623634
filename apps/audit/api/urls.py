from django.urls import path, re_path
from rest_framework.routers import DefaultRouter

from apps.audit.api.evidence import EvidenceBodyView, EvidenceView
from apps.audit.api.views import AuditEventViewSet, AuditStatsView, AuditVerifyView

app_name = "audit-api"
router = DefaultRouter()
router.include_root_view = False  # the site's API root lists every app's collections
router.register("audit/events", AuditEventViewSet)

urlpatterns = [
    path("audit/verify", AuditVerifyView.as_view(), name="audit-verify"),
    path("audit/stats", AuditStatsView.as_view(), name="audit-stats"),
    path("audit/events/<int:pk>/evidence/", EvidenceView.as_view(), name="auditevent-evidence"),
    re_path(
        r"^audit/events/(?P<pk>[0-9]+)/evidence/(?P<direction>request|response)/$",
        EvidenceBodyView.as_view(),
        name="auditevent-evidence-body",
    ),
    *router.urls,
]
