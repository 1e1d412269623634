"""``/gw/<upstream>/<path>``: authenticate, check, resolve, decide, forward, relay, audit.

Every attempt, allowed or denied, ends in exactly one audit event.  The steps
(``apps.gateway.steps``) return what they found; the attempt is built from those values
here, in ``audit_attempt``; the relay (``apps.gateway.relay``) writes its outcome.  Refusals
answer ``{"code", "detail", "request_id"}`` with the same ``code`` that the event records
as its ``reason`` (or ``error`` for upstream failures).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from apps.audit.choices import Decision
from apps.audit.evidence.capture import Capture
from apps.audit.recording import Attempt, BodyCount, GatewayAttempt, Outcome
from apps.core import refusals
from apps.core.errors import error_body
from apps.gateway import capturing, forwarding, headers, steps, tracing
from apps.gateway.choices import Reason, UpstreamError
from apps.gateway.models import Upstream
from apps.gateway.policy import Verdict
from apps.gateway.relay import Answered, Relay, RelayedResponse
from apps.gateway.steps import Call, Caller, Framing, Refused

logger = logging.getLogger(__name__)

_NO_BODY_STATUSES = {204, 304}
# The gateway's own cookies, which no upstream may set (apps.gateway.cookies).
_GATEWAY_COOKIES = frozenset({settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, settings.LANGUAGE_COOKIE_NAME})


def audit_attempt(
    call: Call, *, caller: Caller | None = None, framing: Framing | None = None, upstream: Upstream | None = None,
    verdict: Verdict | None = None, refusal: Refused | None = None, trace: tracing.TraceContext | None = None,
    websocket: bool = False,
) -> GatewayAttempt:  # fmt: skip
    """The audit event of this attempt, from what the steps found (the one place it is built)."""
    allowed = refusal is None
    rule_id = refusal.rule_id if refusal and refusal.rule_id is not None else (verdict.rule_id if verdict else None)
    record = Attempt(
        request_id=call.request_id, method=call.method, path=framing.path if framing else call.raw_path,
        query=call.query, source_ip=call.source_ip, peer_ip=call.peer_ip, forwarded_chain=call.forwarded_chain,
        host=call.host, user_agent=call.user_agent, occurred_at=call.occurred_at,
        actor_id=caller.user.pk if caller else None, actor_username=caller.username if caller else "",
        actor_groups=caller.group_names if caller else (), auth_method="token" if caller else "",
        token_key_id=caller.token_key_id if caller else (refusal.token_key_id if refusal else ""),
        upstream_id=upstream.pk if upstream else None, upstream_name=call.upstream_name,
        decision=Decision.ALLOW if allowed else Decision.DENY,
        reason=Reason.ALLOWED if allowed else refusal.reason, rule_id=rule_id,  # type: ignore[union-attr]
        # Which header was injected, never its value.
        injected_credential=upstream.credential_header if allowed and upstream and upstream.credential_value else "",
        trace_id=trace.trace_id if trace else "", parent_event_id=trace.parent_event_id if trace else None,
        websocket=websocket,
    )  # fmt: skip
    return GatewayAttempt(record, started=call.started)


def _refuse(request: HttpRequest, attempt: GatewayAttempt, refusal: Refused) -> JsonResponse:
    attempt.deny(Outcome(status=refusal.status))
    response = JsonResponse(error_body(request, refusal.reason, refusal.detail), status=refusal.status)
    if refusal.status == 401:
        response["WWW-Authenticate"] = 'Token realm="auditgate"'
    return response


def _failed(
    request: HttpRequest, attempt: GatewayAttempt, error: str, sent: BodyCount | None, answered: Answered | None = None,
    capture: Capture | None = None,
) -> JsonResponse:  # fmt: skip
    """The exchange ended before there was an answer to relay: the event says why."""
    status = refusals.status_of(error)
    attempt.finish(
        Outcome(
            status=status, error=error, request=sent, client_aborted=error in _CLIENT_FAULTS,
            upstream_status=answered.status if answered else None, ttfb_ms=answered.ttfb_ms if answered else None,
            capture=capture,
        )
    )  # fmt: skip
    return JsonResponse(error_body(request, error, refusals.detail_of(error)), status=status)


_CLIENT_FAULTS = frozenset({UpstreamError.CLIENT_ABORTED, UpstreamError.CLIENT_BODY_TIMEOUT})


@csrf_exempt  # Token-authenticated only: cookies never authenticate on /gw/.
def gateway(request: HttpRequest, upstream: str | None = None, path: str | None = None) -> HttpResponseBase:
    call = Call.of(request, upstream or "")
    try:
        return _handle(request, call)
    except DatabaseError:
        # No database: nothing can be decided or recorded, so nothing is forwarded (fail-closed).
        logger.exception("Database unavailable: refusing %s", call.request_id)
        body = error_body(request, "database_unavailable", "The gateway cannot decide or record this request now.")
        return JsonResponse(body, status=503)


@dataclass(frozen=True)
class Decided:
    """An allowed attempt: what the steps found, and its audit event (not begun yet)."""

    attempt: GatewayAttempt
    caller: Caller
    framing: Framing
    target: Upstream
    url: str
    trace: tracing.TraceContext
    # The deciding rule asks for the exchange's bodies as evidence (the upstream's own flag is
    # read with it in apps.gateway.capturing).
    rule_captures: bool = False


class Denied(Exception):
    """A refusal, with its audit event (not written yet: ``_refuse`` writes it)."""

    def __init__(self, refusal: Refused, attempt: GatewayAttempt):
        super().__init__(refusal.reason)
        self.refusal, self.attempt = refusal, attempt


def decide(request: HttpRequest, call: Call, *, websocket: bool = False) -> Decided:
    """The steps of the decision, in order; raises ``Denied``.  Shared by this view and the
    WebSocket relay (``apps.gateway.websocket``): ``websocket`` admits an ``Upgrade: websocket``."""
    caller = framing = target = verdict = trace = None
    try:
        trace = steps.trace(request)
        steps.within_hops(trace)
        caller = steps.authenticate(request)
        framing = steps.check(request, call, websocket=websocket)
        target = steps.resolve(call.upstream_name)
        verdict = steps.allow(call, caller, target, framing)
        # After the policy: only a caller it lets in learns that the secrets cannot be read.
        steps.secrets_readable(target)
        url = steps.target_url(target, framing, call)
    except Refused as refusal:
        attempt = audit_attempt(
            call, caller=caller, framing=framing, upstream=target, verdict=verdict, refusal=refusal, trace=trace,
            websocket=websocket,
        )  # fmt: skip
        raise Denied(refusal, attempt) from None
    attempt = audit_attempt(
        call, caller=caller, framing=framing, upstream=target, verdict=verdict, trace=trace, websocket=websocket
    )
    rule_captures = verdict is not None and verdict.capture_evidence
    return Decided(attempt, caller, framing, target, url, trace, rule_captures=rule_captures)


def begin(request: HttpRequest, call: Call, attempt: GatewayAttempt, target: Upstream) -> JsonResponse | None:
    """Commit the attempt before anything is sent: a 503 to answer when it cannot be
    recorded (fail-closed), None to go on (also for a ``fail_open`` upstream)."""
    try:
        attempt.begin()
    except DatabaseError:
        if not target.fail_open:
            logger.exception("Audit trail unavailable: refusing to forward %s (fail-closed)", call.request_id)
            return JsonResponse(error_body(request, "audit_unavailable", refusals.detail_of("audit_unavailable")),
                                status=503)  # fmt: skip
        logger.error("AUDIT TRAIL UNAVAILABLE: forwarding %s to fail-open upstream %s UNRECORDED so far",
                     call.request_id, target.name)  # fmt: skip
    return None


def _handle(request: HttpRequest, call: Call) -> HttpResponseBase:
    try:
        decided = decide(request, call)
    except Denied as denied:
        return _refuse(request, denied.attempt, denied.refusal)
    attempt, caller, framing, target, url, trace = (
        decided.attempt, decided.caller, decided.framing, decided.target, decided.url, decided.trace
    )  # fmt: skip
    unrecorded = begin(request, call, attempt, target)
    if unrecorded is not None:
        return unrecorded
    try:
        return _forward(request, attempt, call, caller, target, framing, url, trace, decided.rule_captures)
    except BaseException:
        # A bug, or the process being told to stop: the attempt still gets its outcome, so
        # the trail is complete and the sealer never waits on it (Relay.close() records
        # the attempts that got as far as a response).
        error = UpstreamError.GATEWAY_ERROR
        attempt.finish(Outcome(status=refusals.status_of(error), error=error))
        raise


def _request_body(
    request: HttpRequest, framing: Framing, target: Upstream, capture: Capture | None
) -> forwarding.RequestBody | None:
    count = capture.request.count if capture else None
    if framing.chunked:
        # Django reads a body by its Content-Length, and a chunked one has none: read the
        # WSGI input itself, to its end.
        return forwarding.RequestBody(request.META["wsgi.input"], None, target.max_request_bytes, count)
    if framing.length:
        return forwarding.RequestBody(request, framing.length, target.max_request_bytes, count)  # type: ignore[arg-type]
    return None


def _forward(
    request: HttpRequest, attempt: GatewayAttempt, call: Call, caller: Caller, target: Upstream, framing: Framing,
    url: str, trace: tracing.TraceContext, rule_captures: bool = False,
) -> HttpResponseBase:  # fmt: skip
    # The upstream's own calls through the gate name this attempt as their parent and run
    # one hop level up (apps.gateway.tracing).
    trace_out = trace.for_upstream(attempt.event_id, tracing.expiry(target.total_timeout))
    headers_in = headers.for_upstream(request, target, call, caller, framing.length, trace=trace_out)
    capture = capturing.capture_for(request, target, headers_in, rule_asks=rule_captures)
    body = _request_body(request, framing, target, capture)
    sent = body.count if body else None
    started = time.monotonic()
    deadline = forwarding.Deadline(target.total_timeout)
    try:
        upstream_response = forwarding.open_upstream(target, call.method, url, headers_in, body, deadline)
    except forwarding.ClientGone as gone:
        why = "timed out" if gone.timed_out else "client left"
        logger.info("Request body of %s cut off (%s)", call.request_id, why)
        error = UpstreamError.CLIENT_BODY_TIMEOUT if gone.timed_out else UpstreamError.CLIENT_ABORTED
        return _failed(request, attempt, error, sent, capture=capture)
    except forwarding.BodyTooLarge:
        # Only a chunked body can outgrow the limit here (a declared length was checked before).
        return _failed(request, attempt, Reason.REQUEST_TOO_LARGE, sent, capture=capture)
    except forwarding.UPSTREAM_FAILURES as exc:
        error = forwarding.classify(exc)
        logger.warning("Upstream %s failed: %s (%s)", target.name, error, type(exc).__name__)
        return _failed(request, attempt, error, sent, capture=capture)
    answered = Answered(
        status=upstream_response.status, ttfb_ms=round((time.monotonic() - started) * 1000, 3),
        request=sent or BodyCount(),
    )  # fmt: skip
    if capture is not None:
        capture.response.headers = list(upstream_response.headers.iteritems())
    if forwarding.declared_length(upstream_response) > target.max_response_bytes:
        upstream_response.close()
        logger.warning("Upstream %s declared more than %d bytes", target.name, target.max_response_bytes)
        return _failed(request, attempt, UpstreamError.TOO_LARGE, sent, answered, capture)
    has_body = call.method != "HEAD" and upstream_response.status not in _NO_BODY_STATUSES
    relay = Relay(upstream_response, attempt, answered, has_body, target, deadline, capture)
    gateway_base = f"{request.scheme}://{call.host}/gw/{target.name}"
    headers_out = headers.client_facing(
        upstream_response.headers.iteritems(),
        upstream_name=target.name,
        location=lambda value: target.gateway_location(value, gateway_base, url),
        gateway_cookies=_GATEWAY_COOKIES,
    )
    return RelayedResponse(relay, upstream_response.status, headers_out)
