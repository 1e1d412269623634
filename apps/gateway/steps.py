"""The gateway's decision, step by step: each step takes what it needs and returns what it
found, or raises ``Refused``.  Nothing here writes the audit trail: ``apps.gateway.views``
builds the attempt from these values, in one place.

authenticate -> Caller;  check -> Framing;  resolve -> Upstream;  decide -> Verdict;
secrets_readable (the upstream's stored secrets decrypt)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from rest_framework import exceptions

from apps.core import refusals, secrets_at_rest
from apps.gateway import headers, paths, tracing
from apps.gateway.addresses import client_ip
from apps.gateway.authentication import APITokenAuthentication
from apps.gateway.cache import TTLCache
from apps.gateway.choices import HTTP_METHODS, Reason
from apps.gateway.models import Upstream
from apps.gateway.models.upstreams import UnsafeTarget
from apps.gateway.policy import AccessRequest, Verdict, decide

logger = logging.getLogger(__name__)

_upstreams: TTLCache[Upstream | None] = TTLCache(settings.POLICY_CACHE_SECONDS)
_groups: TTLCache[tuple[frozenset[int], tuple[str, ...]]] = TTLCache(settings.POLICY_CACHE_SECONDS)
# Where the policy's words differ from the API's for the same code.
_POLICY_DETAIL = {
    Reason.SOURCE_IP_NOT_ALLOWED: "Not allowed from this address.",
    Reason.TOKEN_SCOPE: "This token may not be used on this upstream.",
}


class Refused(Exception):
    """A refusal: its status and default detail come from the table (apps.core.refusals).
    ``token_key_id`` and ``rule_id``: what the refusing step found, for the event."""

    def __init__(
        self, reason: str, detail: str | None = None, status: int | None = None, *,
        token_key_id: str = "", rule_id: int | None = None,
    ):  # fmt: skip
        self.reason = reason
        self.detail = detail or refusals.detail_of(reason)
        self.status = status or refusals.status_of(reason)
        self.token_key_id, self.rule_id = token_key_id, rule_id
        super().__init__(self.detail)


@dataclass(frozen=True)
class Call:
    """What arrived, before anything was decided."""

    request_id: str
    method: str
    raw_path: str
    query: str
    source_ip: str | None
    peer_ip: str | None
    forwarded_chain: str
    host: str
    user_agent: str
    upstream_name: str
    occurred_at: datetime = field(default_factory=timezone.now)
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def of(cls, request: HttpRequest, upstream_name: str, *, host: str | None = None) -> Call:
        """``host``: the Host header as sent, when Django refused it (``request.get_host()`` raises)."""
        meta = request.META
        return cls(
            request_id=getattr(request, "request_id", ""),
            method=request.method or "",
            raw_path=meta.get("REQUEST_URI", request.path).split("?", 1)[0][:2000],
            query=meta.get("QUERY_STRING", ""),
            source_ip=client_ip(meta) or None,
            peer_ip=meta.get("REMOTE_ADDR") or None,
            forwarded_chain=meta.get("HTTP_X_FORWARDED_FOR", ""),
            host=request.get_host() if host is None else host,
            user_agent=meta.get("HTTP_USER_AGENT", ""),
            upstream_name=upstream_name,
        )


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's user."""

    user: Any
    token: Any
    group_ids: frozenset[int]
    group_names: tuple[str, ...]

    @property
    def username(self) -> str:
        return self.user.get_username()

    @property
    def token_key_id(self) -> str:
        return getattr(self.token, "key_id", "")


@dataclass(frozen=True)
class Framing:
    """The request's path as rules see it and forwarding sends it, and its body's length."""

    path: str
    length: int  # 0 when chunked
    chunked: bool = False


def trace(request: HttpRequest) -> tracing.TraceContext:
    """The request's place in a chain of calls through the gate (apps.gateway.tracing).
    Checked first, before the database is asked anything: a forged level is refused fast."""
    try:
        context = tracing.received(request.META)
    except tracing.InvalidTraceContext as exc:
        raise Refused(Reason.INVALID_TRACE_CONTEXT, str(exc)) from None
    group = tracing.daemon_group_level(request.META)
    if group is not None and context.level <= settings.GATEWAY_MAX_HOPS and group != context.level:
        # Apache routes on the entry's text; this catches any spelling it read otherwise,
        # so a nested call never runs in a pool that its parents may hold.
        raise Refused(Reason.INVALID_TRACE_CONTEXT, "This request arrived in the daemon group of another hop level.")
    return context


def within_hops(context: tracing.TraceContext) -> None:
    if context.level > settings.GATEWAY_MAX_HOPS:
        raise Refused(Reason.TOO_MANY_HOPS)


def authenticate(request: HttpRequest) -> Caller:
    try:
        result = APITokenAuthentication().authenticate(request)
    except exceptions.AuthenticationFailed as exc:
        codes = exc.get_codes()
        reason = Reason(codes) if isinstance(codes, str) and codes in Reason.values else Reason.AUTHENTICATION_FAILED
        raise Refused(reason, str(exc.detail), token_key_id=getattr(exc, "token_key_id", "")) from None
    except exceptions.PermissionDenied as exc:  # e.g. the token's source CIDRs
        codes = exc.get_codes()
        reason = Reason(codes) if isinstance(codes, str) and codes in Reason.values else Reason.TOKEN_SCOPE
        raise Refused(reason, str(exc.detail), token_key_id=getattr(exc, "token_key_id", "")) from None
    if result is None:
        raise Refused(Reason.NOT_AUTHENTICATED, "Send 'Authorization: Token <token>'.")
    user, token = result
    request.user = user
    group_ids, group_names = _groups_of(user)
    return Caller(user=user, token=token, group_ids=group_ids, group_names=group_names)


def _groups_of(user: Any) -> tuple[frozenset[int], tuple[str, ...]]:
    """The user's group ids and names, cached like the rules (a membership change counts as one)."""

    def load() -> tuple[frozenset[int], tuple[str, ...]]:
        rows = list(user.groups.order_by("name").values_list("id", "name"))
        return frozenset(i for i, _ in rows), tuple(n for _, n in rows)

    return _groups.get_or_load(user.pk, load)


def check(request: HttpRequest, call: Call, *, websocket: bool = False) -> Framing:
    """What needs no database: method, path, framing, loops.  ``websocket``: the request
    came through the WebSocket relay, which admits ``Upgrade: websocket`` (and only that)."""
    meta = request.META
    if call.method not in HTTP_METHODS:
        raise Refused(Reason.METHOD_NOT_ALLOWED, f"{call.method} is never proxied.", status=405)
    if "HTTP_UPGRADE" in meta and not (websocket and meta["HTTP_UPGRADE"].strip().lower() == "websocket"):
        raise Refused(Reason.UPGRADE_NOT_SUPPORTED)
    if headers.hops_through_us(meta) > settings.GATEWAY_MAX_HOPS:
        raise Refused(Reason.LOOP_DETECTED)
    try:
        path = paths.normalise(paths.gateway_suffix(meta.get("REQUEST_URI") or request.get_full_path(),
                                                    call.upstream_name))  # fmt: skip
    except paths.InvalidPath as exc:
        raise Refused(Reason.INVALID_PATH, f"Invalid path: {exc}.") from None
    coding = meta.get("HTTP_TRANSFER_ENCODING", "").strip().lower()
    if coding == "chunked":  # mod_wsgi passes it through (WSGIChunkedRequest On); streamed as it comes
        return Framing(path=path, length=0, chunked=True)
    if coding:  # Apache refuses other codings first (411); never guess a body's framing
        raise Refused(Reason.LENGTH_REQUIRED, "Send a Content-Length, or a body with Transfer-Encoding: chunked.")
    try:
        return Framing(path=path, length=max(int(meta.get("CONTENT_LENGTH") or 0), 0))
    except ValueError:
        raise Refused(Reason.LENGTH_REQUIRED, "Content-Length is not a number.") from None


def resolve(upstream_name: str) -> Upstream:
    upstream = _upstreams.get_or_load(upstream_name, lambda: Upstream.objects.filter(name=upstream_name).first())
    if upstream is None:
        raise Refused(Reason.UPSTREAM_NOT_FOUND, f"No upstream named {upstream_name!r}.")
    return upstream


def secrets_readable(upstream: Upstream) -> None:
    """Refuse rather than forward without the upstream's credential or identity header when its
    stored secrets cannot be decrypted (apps.core.secrets_at_rest): a key missing from the ring."""
    unreadable = secrets_at_rest.unreadable_fields(upstream)
    if unreadable:
        logger.error("Upstream %s: no key of AUDITGATE_SECRETS_KEYS decrypts its %s", upstream.name, unreadable)
        raise Refused(Reason.UPSTREAM_SECRET_UNREADABLE)


def allow(call: Call, caller: Caller, upstream: Upstream, framing: Framing) -> Verdict:
    """The policy's verdict, and the upstream's body limit; raises Refused unless allowed."""
    verdict = decide(
        AccessRequest(
            user_id=caller.user.pk,
            group_ids=caller.group_ids,
            upstream=upstream,
            method=call.method,
            path=framing.path,
            source_ip=call.source_ip,
            at=timezone.now(),
            token=caller.token,
        )
    )
    if not verdict.allowed:
        status = 405 if verdict.reason == Reason.METHOD_NOT_ALLOWED and verdict.rule_id is None else None
        raise Refused(verdict.reason, _POLICY_DETAIL.get(verdict.reason), status=status, rule_id=verdict.rule_id)
    if framing.length > upstream.max_request_bytes:
        raise Refused(Reason.REQUEST_TOO_LARGE, f"The body exceeds {upstream.max_request_bytes} bytes.",
                      rule_id=verdict.rule_id)  # fmt: skip
    return verdict


def target_url(upstream: Upstream, framing: Framing, call: Call) -> str:
    try:
        return upstream.url_for(framing.path, call.query)
    except UnsafeTarget:
        raise Refused(Reason.INVALID_PATH, "The path does not stay on the upstream.") from None
