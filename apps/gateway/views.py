"""``/gw/<upstream>/<path>``: authenticate, check, decide, forward, stream back, audit.

Every attempt, allowed or denied, ends in exactly one audit event.  Refusals
answer ``{"code", "detail", "request_id"}`` with the same ``code`` that the
event records as its ``reason`` (or ``error`` for upstream failures).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions

from apps.audit.choices import Decision
from apps.audit.recording import GatewayAttempt
from apps.core import refusals
from apps.core.errors import error_body
from apps.gateway import headers, paths, proxy
from apps.gateway.addresses import client_ip
from apps.gateway.authentication import APITokenAuthentication
from apps.gateway.cache import TTLCache
from apps.gateway.choices import HTTP_METHODS, Reason, UpstreamError
from apps.gateway.models import Upstream
from apps.gateway.models.upstreams import UnsafeTarget
from apps.gateway.policy import AccessRequest, decide

logger = logging.getLogger(__name__)

_NO_BODY_STATUSES = {204, 304}
# The gateway's own cookies, which no upstream may set (apps.gateway.cookies).
_GATEWAY_COOKIES = frozenset({settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, settings.LANGUAGE_COOKIE_NAME})
_upstreams: TTLCache[Upstream | None] = TTLCache(settings.POLICY_CACHE_SECONDS)
_groups: TTLCache[tuple[frozenset[int], tuple[str, ...]]] = TTLCache(settings.POLICY_CACHE_SECONDS)


class Refused(Exception):
    """A refusal: its status and default detail come from the table (apps.core.refusals)."""

    def __init__(self, reason: Reason, detail: str | None = None, status: int | None = None):
        self.reason = reason
        self.detail = detail or refusals.detail_of(reason)
        self.status = status or refusals.status_of(reason)
        super().__init__(self.detail)


def _start_attempt(request: HttpRequest, upstream_name: str) -> GatewayAttempt:
    return GatewayAttempt(
        request_id=request.request_id,  # type: ignore[attr-defined]
        method=request.method or "",
        path=request.META.get("REQUEST_URI", request.path).split("?", 1)[0][:2000],
        query=request.META.get("QUERY_STRING", ""),
        source_ip=client_ip(request.META) or None,
        peer_ip=request.META.get("REMOTE_ADDR") or None,
        forwarded_chain=request.META.get("HTTP_X_FORWARDED_FOR", ""),
        host=request.get_host(),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        upstream_name=upstream_name,
    )


def _authenticate(request: HttpRequest, attempt: GatewayAttempt) -> Any:
    try:
        result = APITokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed as exc:
        codes = exc.get_codes()
        reason = Reason(codes) if codes in Reason.values else Reason.AUTHENTICATION_FAILED
        attempt.token_key_id = getattr(exc, "token_key_id", "")
        raise Refused(reason, str(exc.detail)) from None
    except exceptions.PermissionDenied as exc:  # e.g. the token's source CIDRs
        attempt.token_key_id = getattr(exc, "token_key_id", "")
        codes = exc.get_codes()
        raise Refused(Reason(codes) if codes in Reason.values else Reason.TOKEN_SCOPE, str(exc.detail)) from None
    if result is None:
        raise Refused(Reason.NOT_AUTHENTICATED, "Send 'Authorization: Token <token>'.")
    request.user, token = result
    attempt.actor_id = request.user.pk
    attempt.actor_username = request.user.get_username()
    attempt.actor_groups = list(_groups_of(request.user)[1])
    attempt.auth_method = "token"
    attempt.token_key_id = getattr(token, "key_id", "")
    return token


def _groups_of(user: Any) -> tuple[frozenset[int], tuple[str, ...]]:
    """The user's group ids and names, cached like the rules (a membership change counts as one)."""

    def load() -> tuple[frozenset[int], tuple[str, ...]]:
        rows = list(user.groups.order_by("name").values_list("id", "name"))
        return frozenset(i for i, _ in rows), tuple(n for _, n in rows)

    return _groups.get_or_load(user.pk, load)


def _check_request(request: HttpRequest, upstream_name: str, attempt: GatewayAttempt) -> int:
    """What needs no database: method, path, framing, loops. Returns the body length."""
    meta = request.META
    if request.method not in HTTP_METHODS:
        raise Refused(Reason.METHOD_NOT_ALLOWED, f"{request.method} is never proxied.", status=405)
    if "HTTP_UPGRADE" in meta:
        raise Refused(Reason.UPGRADE_NOT_SUPPORTED, "Protocol upgrades (WebSocket) cannot pass a WSGI gateway.")
    if headers.hops_through_us(meta) > settings.GATEWAY_MAX_HOPS:
        raise Refused(Reason.LOOP_DETECTED, "This request has looped through the gateway.")
    try:
        raw = paths.gateway_suffix(meta.get("REQUEST_URI") or request.get_full_path(), upstream_name)
        attempt.path = paths.normalise(raw)
    except paths.InvalidPath as exc:
        raise Refused(Reason.INVALID_PATH, f"Invalid path: {exc}.") from None
    if "HTTP_TRANSFER_ENCODING" in meta:
        raise Refused(Reason.LENGTH_REQUIRED, "Send a Content-Length; chunked request bodies are not proxied.")
    try:
        return max(int(meta.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        raise Refused(Reason.LENGTH_REQUIRED, "Content-Length is not a number.") from None


def _resolve(upstream_name: str, attempt: GatewayAttempt) -> Upstream:
    upstream = _upstreams.get_or_load(upstream_name, lambda: Upstream.objects.filter(name=upstream_name).first())
    if upstream is None:
        raise Refused(Reason.UPSTREAM_NOT_FOUND, f"No upstream named {upstream_name!r}.")
    attempt.upstream_id = upstream.pk
    return upstream


def _decide(request: HttpRequest, token: Any, upstream: Upstream, attempt: GatewayAttempt, length: int) -> None:
    user = request.user
    group_ids = _groups_of(user)[0]
    decision = decide(
        AccessRequest(
            user_id=user.pk,
            group_ids=group_ids,
            upstream=upstream,
            method=attempt.method,
            path=attempt.path,
            source_ip=attempt.source_ip,
            at=timezone.now(),
            token=token,
        )
    )
    attempt.rule_id = decision.rule_id
    if not decision.allowed:
        status = 405 if decision.reason == Reason.METHOD_NOT_ALLOWED and decision.rule_id is None else None
        raise Refused(decision.reason, _POLICY_DETAIL.get(decision.reason), status=status)
    if length > upstream.max_request_bytes:
        raise Refused(Reason.REQUEST_TOO_LARGE, f"The body exceeds {upstream.max_request_bytes} bytes.")


# Where the policy's words differ from the API's for the same code.
_POLICY_DETAIL = {
    Reason.SOURCE_IP_NOT_ALLOWED: "Not allowed from this address.",
    Reason.TOKEN_SCOPE: "This token may not be used on this upstream.",
}


def _refuse(request: HttpRequest, attempt: GatewayAttempt, refusal: Refused) -> JsonResponse:
    attempt.decision, attempt.reason, attempt.status = Decision.DENY, refusal.reason, refusal.status
    attempt.deny()
    response = JsonResponse(error_body(request, refusal.reason, refusal.detail), status=refusal.status)
    if refusal.status == 401:
        response["WWW-Authenticate"] = 'Token realm="auditgate"'
    return response


def _upstream_failed(request: HttpRequest, attempt: GatewayAttempt, exc: BaseException) -> JsonResponse:
    error = proxy.classify(exc)
    status = refusals.status_of(error)
    logger.warning("Upstream %s failed: %s (%s)", attempt.upstream_name, error, type(exc).__name__)
    attempt.error, attempt.status = error, status
    attempt.finish()
    return JsonResponse(error_body(request, error, refusals.detail_of(error)), status=status)


def _client_gone(request: HttpRequest, attempt: GatewayAttempt, gone: proxy.ClientGone) -> JsonResponse:
    """The body did not arrive whole.  The event records what the client got: Apache's own 408
    when its body timeout fired, or nothing at all when the client hung up (499, nginx's name)."""
    logger.info("Request body of %s cut off after %d bytes (%s)", attempt.request_id, attempt.request_bytes,
                "timed out" if gone.timed_out else "client left")  # fmt: skip
    error = UpstreamError.CLIENT_BODY_TIMEOUT if gone.timed_out else UpstreamError.CLIENT_ABORTED
    attempt.error, attempt.status = error, refusals.status_of(error)
    attempt.finish()
    return JsonResponse(error_body(request, error, refusals.detail_of(error)), status=attempt.status)


@csrf_exempt  # Token-authenticated only: cookies never authenticate on /gw/.
def gateway(request: HttpRequest, upstream: str | None = None, path: str | None = None) -> HttpResponse:
    attempt = _start_attempt(request, upstream or "")
    try:
        return _handle(request, upstream or "", attempt)
    except DatabaseError:
        # No database: nothing can be decided or recorded, so nothing is forwarded (fail-closed).
        logger.exception("Database unavailable: refusing %s", attempt.request_id)
        body = error_body(request, "database_unavailable", "The gateway cannot decide or record this request now.")
        return JsonResponse(body, status=503)


def _handle(request: HttpRequest, upstream: str, attempt: GatewayAttempt) -> HttpResponse:
    try:
        token = _authenticate(request, attempt)
        length = _check_request(request, upstream, attempt)
        target = _resolve(upstream, attempt)
        _decide(request, token, target, attempt, length)
        url = _target_url(target, attempt)
    except Refused as refusal:
        return _refuse(request, attempt, refusal)
    attempt.decision, attempt.reason = Decision.ALLOW, Reason.ALLOWED
    if target.credential_header and target.credential_value:
        attempt.injected_credential = target.credential_header  # which one, never its value
    try:
        attempt.begin()
    except DatabaseError:
        if not target.fail_open:
            logger.exception("Audit trail unavailable: refusing to forward %s (fail-closed)", attempt.request_id)
            return JsonResponse(
                error_body(request, "audit_unavailable", refusals.detail_of("audit_unavailable")), status=503
            )
        logger.error("AUDIT TRAIL UNAVAILABLE: forwarding %s to fail-open upstream %s UNRECORDED so far",
                     attempt.request_id, target.name)  # fmt: skip
    try:
        return _forward(request, attempt, target, url, length)
    except BaseException:
        # A bug, or the process being told to stop: the attempt still gets its outcome, so
        # the trail is complete and the sealer never waits on it (Relay.close() records
        # the attempts that got as far as a response).
        attempt.error, attempt.status = UpstreamError.GATEWAY_ERROR, refusals.status_of(UpstreamError.GATEWAY_ERROR)
        attempt.finish()
        raise


def _target_url(target: Upstream, attempt: GatewayAttempt) -> str:
    try:
        return target.url_for(attempt.path, attempt.query)
    except UnsafeTarget:
        raise Refused(Reason.INVALID_PATH, "The path does not stay on the upstream.") from None


def _forward(request: HttpRequest, attempt: GatewayAttempt, target: Upstream, url: str, length: int) -> HttpResponse:
    body = proxy.CountingReader(request, attempt, length) if length else None  # type: ignore[arg-type]
    headers_in = headers.for_upstream(request, target, attempt, length)
    sent = time.monotonic()
    deadline = proxy.Deadline(target.total_timeout)
    try:
        upstream_response = proxy.open_upstream(target, attempt.method, url, headers_in, body, deadline)
    except proxy.ClientGone as gone:
        return _client_gone(request, attempt, gone)
    except proxy.UPSTREAM_FAILURES as exc:
        return _upstream_failed(request, attempt, exc)
    attempt.ttfb_ms = round((time.monotonic() - sent) * 1000, 3)
    attempt.status = attempt.upstream_status = upstream_response.status
    if proxy.declared_length(upstream_response) > target.max_response_bytes:
        upstream_response.close()
        return _upstream_failed(request, attempt, proxy.ResponseTooLarge())
    has_body = attempt.method != "HEAD" and upstream_response.status not in _NO_BODY_STATUSES
    relay = proxy.Relay(upstream_response, attempt, has_body, target, deadline)
    gateway_base = f"{request.scheme}://{request.get_host()}/gw/{target.name}"
    headers_out = headers.client_facing(
        upstream_response.headers.iteritems(),
        upstream_name=target.name,
        location=lambda value: target.gateway_location(value, gateway_base, url),
        gateway_cookies=_GATEWAY_COOKIES,
    )
    return proxy.RelayedResponse(relay, upstream_response.status, headers_out)
