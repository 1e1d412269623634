from django.urls import path

from apps.audit.views import dashboard

app_name = "audit"
urlpatterns = [
    path("audit/dashboard/", dashboard, name="dashboard"),
]
