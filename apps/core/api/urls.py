from django.urls import path

from apps.core.api.views import HealthView, MeView

app_name = "core-api"
urlpatterns = [
    path("health/", HealthView.as_view(), name="health"),
    path("me/", MeView.as_view(), name="me"),
]
