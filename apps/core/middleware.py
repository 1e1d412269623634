"""Request ids (one per request, shared by Apache's access log, the audit trail and the
client), and a 503 instead of a 500 while the database is unreachable."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.core.errors import error_body

logger = logging.getLogger(__name__)

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


class DatabaseUnavailableMiddleware:
    """A view that cannot reach the database (MariaDB restarting, connections exhausted)
    answers 503 ``database_unavailable`` with ``Retry-After``, like the gateway does: the
    client may retry, and nothing is half done (every write is a transaction).  Other
    database errors (integrity, programming) stay 500s: those are bugs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning("Database unavailable: %s answered 503 (%s)", request.path, exception)
        body = error_body(request, "database_unavailable", "The database cannot be reached now; retry shortly.")
        response = JsonResponse(body, status=503)
        response["Retry-After"] = "5"
        return response


class ChunkedBodyMiddleware:
    """A request body sent chunked (no Content-Length) is refused with 411 ``length_required``:
    Django reads a body by its length and would silently see an empty one.  The gateway
    (``/gw/``) streams chunked bodies to its upstreams itself, so it is left to the gateway view."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not request.path.startswith("/gw/"):
            detail = "Send a Content-Length: chunked request bodies are not accepted."
            return JsonResponse(error_body(request, "length_required", detail), status=411)
        return self.get_response(request)
