from django.urls import re_path

from apps.gateway.views import gateway

app_name = "gateway"
urlpatterns = [
    # Everything under /gw reaches the gateway view, which reads the raw request URI itself:
    # Apache has already decoded and merged dot segments in the path Django routes on, so a
    # request that no longer looks like /gw/<upstream>/... must still be refused and audited.
    re_path(r"^gw(?:/(?P<upstream>[^/]*))?(?P<path>/[\s\S]*)?$", gateway, name="gateway"),
]
