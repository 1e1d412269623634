from django.urls import path, re_path

from auditgate.urls import urlpatterns as auditgate_urlpatterns
from benchsite import views

urlpatterns = [
    path("bench/hello", views.hello),
    re_path(r"^bench/forward/(?P<path>.*)$", views.forward),
    re_path(r"^bench/revproxy/(?P<path>.*)$", views.TunedProxyView.as_view()),
    re_path(r"^bench/chain-a/(?P<path>.*)$", views.ChainProxyView.as_view()),
    re_path(r"^bench/slow/(?P<path>.*)$", views.SlowProxyView.as_view()),
    *auditgate_urlpatterns,
]
