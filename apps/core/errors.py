"""One error shape for the whole API: ``{"code", "detail", "request_id"}``.

``code`` is machine-readable and stable; ``detail`` is for people.  Validation
errors add ``errors`` with DRF's per-field messages.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import DisallowedHost
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.refusals import REFUSALS


def request_id_of(request: Any) -> str | None:
    return getattr(request, "request_id", None)


def error_body(request: Any, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "detail": detail, "request_id": request_id_of(request), **extra}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Django's own exceptions, as DRF would translate them, so they get the same shape.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # A real bug: let Django answer 500 and log it.
    request = context.get("request")
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(request, "invalid", "The request is invalid.", errors=exc.detail)
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        response.data = error_body(request, str(code), str(exc.detail))
    return response


def json_error(request: HttpRequest, code: str, detail: str | None = None) -> JsonResponse:
    """The error answer for ``code``, with its status (and, unless given, its detail) from the table."""
    refusal = REFUSALS[code]
    return JsonResponse(error_body(request, code, detail or refusal.detail), status=refusal.status)


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(request, "not_found", "No such resource.")


def server_error(request: HttpRequest) -> JsonResponse:
    return json_error(request, "server_error")


def bad_request_code(exception: Exception | None) -> tuple[str, str]:
    """The code and detail of one of Django's 400s (a SuspiciousOperation, BadRequest)."""
    if isinstance(exception, DisallowedHost):
        return "host_not_allowed", "This server does not serve the host named in the Host header."
    return "bad_request", "Bad request."


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(request, *bad_request_code(exception))


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return json_error(request, "permission_denied", "You do not have permission.")
