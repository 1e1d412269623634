"""CSRF refusals as the API's JSON errors, with the code ``csrf_failed``.

Two places refuse a request for CSRF: Django's middleware, for the views that are not DRF's
(the browsable API's login and logout forms, the admin), and DRF's session authentication,
for API calls authenticated by the session cookie (token calls need no CSRF token).  Django's
answer was its HTML 403 page and DRF's a 403 ``permission_denied`` indistinguishable from a
missing permission.  Under ``/api/``, and for any client asking for or sending JSON, both
are now 403 ``csrf_failed``; the admin's people in a browser keep Django's page.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views import csrf
from rest_framework import authentication, exceptions

CODE = "csrf_failed"
DETAIL = "CSRF check failed: {reason} Reload the page that sent this form, or authenticate with a token."


def wants_json(request: HttpRequest) -> bool:
    media_types = f"{request.headers.get('Accept', '')} {request.headers.get('Content-Type', '')}"
    return request.path.startswith("/api/") or "json" in media_types.lower()


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: Django's middleware refused the request."""
    # Imported here: DRF imports this module (a setting) while loading the views apps.core.errors needs.
    from apps.core.errors import json_error

    if wants_json(request):
        return json_error(request, CODE, DETAIL.format(reason=reason))
    return csrf.csrf_failure(request, reason=reason)


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication, refusing a missing or wrong CSRF token with ``csrf_failed``."""

    def enforce_csrf(self, request: Any) -> None:
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as exc:
            reason = str(exc.detail).removeprefix("CSRF Failed: ")
            raise exceptions.PermissionDenied(DETAIL.format(reason=reason), code=CODE) from None
