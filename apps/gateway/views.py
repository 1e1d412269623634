"""``/gw/<upstream>/<path>``: authenticate, decide, forward, stream back, audit.

Every attempt, allowed or denied, ends in exactly one audit event.  Denials
answer ``{"code", "detail", "request_id"}`` with the same ``code`` that the
event records as its ``reason``.
"""

from __future__ import annotations

import logging

import urllib3
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions

from apps.audit.models import Decision
from apps.audit.recording import GatewayAttempt
from apps.gateway import paths, proxy
from apps.gateway.authentication import APITokenAuthentication
from apps.gateway.choices import HTTP_METHODS, Reason, UpstreamError
from apps.gateway.models import Upstream
from apps.gateway.policy import decide
from auditgate.errors import error_body

logger = logging.getLogger(__name__)

_DENIAL_STATUS = {
    Reason.NOT_AUTHENTICATED: 401,
    Reason.AUTHENTICATION_FAILED: 401,
    Reason.UPSTREAM_NOT_FOUND: 404,
    Reason.METHOD_NOT_ALLOWED: 405,
    Reason.INVALID_PATH: 400,
    Reason.LENGTH_REQUIRED: 411,
}
_NO_BODY_STATUSES = {204, 304}


class Denied(Exception):
    def __init__(self, reason: Reason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _start_attempt(request: HttpRequest, upstream_name: str, path: str) -> GatewayAttempt:
    return GatewayAttempt(
        request_id=request.request_id,  # type: ignore[attr-defined]
        method=request.method or "",
        path=path,
        query=request.META.get("QUERY_STRING", ""),
        source_ip=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        upstream_name=upstream_name,
    )


def _authenticate(request: HttpRequest, attempt: GatewayAttempt) -> None:
    try:
        result = APITokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed as exc:
        raise Denied(Reason.AUTHENTICATION_FAILED, str(exc.detail)) from None
    if result is None:
        raise Denied(Reason.NOT_AUTHENTICATED, "Send 'Authorization: Token <key>'.")
    request.user = result[0]
    attempt.actor_id = request.user.pk
    attempt.actor_username = request.user.get_username()


def _check_request(request: HttpRequest, raw_path: str, attempt: GatewayAttempt) -> int:
    """Validate what does not need the database; returns the body length."""
    if request.method not in HTTP_METHODS:
        raise Denied(Reason.METHOD_NOT_ALLOWED, f"{request.method} is never proxied.")
    try:
        attempt.path = paths.normalise(raw_path)
    except paths.InvalidPath as exc:
        raise Denied(Reason.INVALID_PATH, f"Invalid path: {exc}.") from None
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        raise Denied(Reason.LENGTH_REQUIRED, "Send a Content-Length; chunked request bodies are not proxied.")
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        raise Denied(Reason.LENGTH_REQUIRED, "Content-Length is not a number.") from None


def _resolve(upstream_name: str, attempt: GatewayAttempt) -> Upstream:
    upstream = Upstream.objects.filter(name=upstream_name).first()
    if upstream is None:
        raise Denied(Reason.UPSTREAM_NOT_FOUND, f"No upstream named {upstream_name!r}.")
    attempt.upstream_id = upstream.pk
    return upstream


def _deny(request: HttpRequest, attempt: GatewayAttempt, denial: Denied) -> JsonResponse:
    status = _DENIAL_STATUS.get(denial.reason, 403)
    attempt.decision, attempt.reason, attempt.status = Decision.DENY, denial.reason, status
    attempt.record()
    response = JsonResponse(error_body(request, denial.reason, denial.detail), status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Token realm="auditgate"'
    return response


def _upstream_failed(request: HttpRequest, attempt: GatewayAttempt, exc: Exception) -> JsonResponse:
    # NewConnectionError subclasses ConnectTimeoutError in urllib3: a refused connection is not a timeout.
    timed_out = isinstance(exc, urllib3.exceptions.TimeoutError) and not isinstance(
        exc, urllib3.exceptions.NewConnectionError
    )
    error = UpstreamError.TIMEOUT if timed_out else UpstreamError.UNREACHABLE
    status = 504 if timed_out else 502
    logger.warning("Upstream %s failed: %s", attempt.upstream_name, type(exc).__name__)
    attempt.error, attempt.status = error, status
    attempt.record()
    detail = "The upstream did not answer in time." if timed_out else "The upstream could not be reached."
    return JsonResponse(error_body(request, error, detail), status=status)


@csrf_exempt  # Token-authenticated only: cookies are never accepted on /gw/.
def gateway(request: HttpRequest, upstream: str, path: str = "") -> HttpResponse:
    attempt = _start_attempt(request, upstream, "/" + path)
    try:
        _authenticate(request, attempt)
        content_length = _check_request(request, path, attempt)
        target = _resolve(upstream, attempt)
        decision = decide(request.user, target, attempt.method, attempt.path)  # type: ignore[arg-type]
        attempt.rule_id = decision.rule_id
        if not decision.allowed:
            raise Denied(decision.reason, "No access rule allows this request.")
    except Denied as denial:
        return _deny(request, attempt, denial)
    attempt.decision, attempt.reason = Decision.ALLOW, Reason.ALLOWED
    return _forward(request, attempt, target, content_length)


def _forward(request: HttpRequest, attempt: GatewayAttempt, target: Upstream, content_length: int) -> HttpResponse:
    body = proxy.CountingReader(request, attempt) if content_length else None  # type: ignore[arg-type]
    headers = proxy.request_headers(request, attempt.request_id, content_length)
    url = target.url_for(attempt.path, attempt.query)
    try:
        upstream_response = proxy.open_upstream(target, attempt.method, url, headers, body)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return _upstream_failed(request, attempt, exc)
    attempt.status = attempt.upstream_status = upstream_response.status
    has_body = attempt.method != "HEAD" and upstream_response.status not in _NO_BODY_STATUSES
    relay = proxy.Relay(upstream_response, attempt, has_body)
    return proxy.RelayedResponse(relay, upstream_response.status, proxy.response_headers(upstream_response))
