"""Request id: one id per request, shared by Apache's access log, the audit trail and the client."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

# mod_unique_id's UNIQUE_ID is what Apache writes to its access log, so using it
# lets anyone join an access-log line to its audit event.
_UNIQUE_ID = re.compile(r"^[A-Za-z0-9@\-_]{16,64}$")


def request_id_for(request: HttpRequest) -> str:
    apache_id = request.META.get("UNIQUE_ID", "")
    if _UNIQUE_ID.match(apache_id):
        return apache_id
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.request_id = request_id_for(request)  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response
