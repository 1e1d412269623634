"""Gateway requests that Django refuses before the gateway view can, recorded all the same.

A ``Host`` header outside ``ALLOWED_HOSTS`` raises ``DisallowedHost`` as soon as anything
reads ``request.get_host()`` (the view does, first thing), and every other
``SuspiciousOperation`` or ``BadRequest`` also ends in Django's 400 handler, not in the view.
Every gateway attempt must end in exactly one audit event, so the handler records these as
``gateway.denied``, with the code the client gets as the reason.  The ``Host`` is recorded as
sent: it is what was refused.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse

from apps.audit.recording import Outcome
from apps.core import errors
from apps.core.handlers import is_gateway_path
from apps.gateway.steps import Call, Refused
from apps.gateway.views import audit_attempt

logger = logging.getLogger(__name__)


def upstream_named_in(path: str) -> str:
    """``crm`` for ``/gw/crm/reports``; empty for ``/gw`` or ``/gw/``."""
    parts = path.split("/", 3)
    return parts[2][:64] if len(parts) > 2 else ""


def record_refusal(request: HttpRequest, reason: str, status: int) -> None:
    # The Host is recorded as sent: it is what was refused.
    call = Call.of(request, upstream_named_in(request.path_info), host=request.META.get("HTTP_HOST", ""))
    try:
        audit_attempt(call, refusal=Refused(reason, status=status)).deny(Outcome(status=status))
    except DatabaseError:
        # Still answered (a refusal forwards nothing); its access-log line stays, and
        # audit_access_log lists it as never recorded.
        logger.exception("Audit trail unavailable: refusal %s of %s not recorded", reason, call.request_id)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """The site's 400 handler: under ``/gw/`` each of Django's 400s is a gateway attempt
    too, so it gets its audit event."""
    code, detail = errors.bad_request_code(exception)
    if is_gateway_path(request.path_info):
        record_refusal(request, code, 400)
    return errors.json_error(request, code, detail)
