"""W3C Trace Context at the gate, and the hop level the gate signs into it.

A service behind the gate that calls another service through the gate makes a *nested*
request.  If nested requests waited for threads of the pool their parents hold, a burst of
parents would starve their own children: the deadlock auditgate was born from, one level
up.  So every request runs in the daemon group of its hop level (``apache/vhost.conf``):
a user's request at level 0, a call made while serving it at level 1, and so on up to
``GATEWAY_MAX_HOPS``.  A request only ever waits on a higher level, so nothing waits on
itself (resources taken in one order cannot deadlock).

The level travels as an entry of ``tracestate``, the header OpenTelemetry-instrumented
services already pass on unchanged::

    tracestate: auditgate=<level>-<parent event id>-<expires>-<mac>[, other vendors...]

The gate writes it on every request it forwards: the next level, the id of the audit
event of the request being forwarded (so the nested call's event names its parent), and
an expiry (the forwarded exchange cannot outlast it); the MAC, keyed from ``SECRET_KEY``,
covers them and the ``traceparent`` trace id.  Apache routes on the level alone (it cannot
check a MAC); the gate then checks the entry before anything else, so a forged or replayed
entry costs its sender a fast 400 ``invalid_trace_context`` (audited) in the group it
tried to jump into.  A caller without an ``auditgate`` entry is a level-0 request.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.core import signing

KEY = "auditgate"
# RFC: https://www.w3.org/TR/trace-context/#traceparent-header (version 00; a later version
# may append fields after the flags, which is why the pattern is not anchored at the end).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ENTRY = re.compile(r"([0-9]{1,2})-(0|[1-9][0-9]{0,18})-([0-9]{10})-([0-9a-f]{32})")
_MAX_OTHER_ENTRIES = 31  # tracestate holds at most 32 list members, ours first
_OWS = " \t"


class InvalidTraceContext(Exception):
    """An ``auditgate`` tracestate entry that this gate did not issue, or no longer honours."""


@dataclass(frozen=True)
class TraceContext:
    """The trace a request belongs to, and where in a chain of gate calls it stands."""

    trace_id: str
    flags: str = "00"
    level: int = 0
    parent_event_id: int | None = None
    other_entries: tuple[str, ...] = ()

    def for_upstream(self, event_id: int | None, expires: int) -> tuple[str, str]:
        """``traceparent`` and ``tracestate`` for the request forwarded on behalf of event ``event_id``.

        The gate takes part in the trace: a new span id, the caller's trace id and flags."""
        traceparent = f"00-{self.trace_id}-{secrets.token_hex(8)}-{self.flags}"
        entry = signed_entry(self.level + 1, event_id or 0, expires, self.trace_id)
        return traceparent, ",".join((f"{KEY}={entry}", *self.other_entries))


def expiry(total_timeout_seconds: float) -> int:
    """When an entry issued now stops being honoured: the forwarded exchange cannot last
    longer than its upstream's ``total_timeout`` (plus the connect and the last write)."""
    return int(time.time() + total_timeout_seconds + 60)


@functools.cache
def _key(secret_key: str) -> bytes:
    # A key of its own, derived from SECRET_KEY (identical on every web host).
    return hashlib.sha256(b"auditgate.tracing\x00" + secret_key.encode()).digest()


def _mac(level: int, parent: int, expires: int, trace_id: str) -> str:
    return signing.sign(_key(settings.SECRET_KEY), f"{level}-{parent}-{expires}-{trace_id}".encode())[:32]


def signed_entry(level: int, parent_event_id: int, expires: int, trace_id: str) -> str:
    return f"{level}-{parent_event_id}-{expires}-{_mac(level, parent_event_id, expires, trace_id)}"


def _traceparent(value: str) -> tuple[str, str] | None:
    """(trace id, flags) of a valid ``traceparent``, else None (the spec: start a new trace)."""
    match = _TRACEPARENT.fullmatch(value.strip(_OWS))
    if not match:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, flags


def _entries(value: str) -> list[tuple[str, str]]:
    entries = []
    for member in value.split(","):
        member = member.strip(_OWS)
        if member:
            key, _, entry = member.partition("=")
            entries.append((key, entry))
    return entries


def received(meta: dict[str, Any], *, now: float | None = None) -> TraceContext:
    """The trace context a request arrived with; raises InvalidTraceContext for a bad
    ``auditgate`` entry.  Without one the request is level 0 and its other
    vendors' entries pass on (or a new trace starts, if ``traceparent`` is missing or invalid)."""
    parent = _traceparent(meta.get("HTTP_TRACEPARENT", ""))
    entries = _entries(meta.get("HTTP_TRACESTATE", "")) if parent else []
    ours = [entry for key, entry in entries if key == KEY]
    others = tuple(f"{key}={entry}" for key, entry in entries if key != KEY)[:_MAX_OTHER_ENTRIES]
    if not ours:
        if parent is None and KEY + "=" in meta.get("HTTP_TRACESTATE", ""):
            raise InvalidTraceContext("The auditgate tracestate entry needs the traceparent it was issued with.")
        trace_id, flags = parent or (secrets.token_hex(16), "00")
        return TraceContext(trace_id=trace_id, flags=flags, other_entries=others)
    trace_id, flags = parent  # type: ignore[misc]  # ``ours`` is only filled when ``parent`` is set
    if len(ours) > 1:
        raise InvalidTraceContext("More than one auditgate tracestate entry.")
    match = _ENTRY.fullmatch(ours[0])
    if not match:
        raise InvalidTraceContext("The auditgate tracestate entry is malformed.")
    level, parent_id, expires = (int(match[i]) for i in (1, 2, 3))
    if not hmac.compare_digest(match[4], _mac(level, parent_id, expires, trace_id)):
        raise InvalidTraceContext("The auditgate tracestate entry was not issued by this gate for this trace.")
    if expires < (time.time() if now is None else now):
        raise InvalidTraceContext("The auditgate tracestate entry has expired.")
    return TraceContext(
        trace_id=trace_id, flags=flags, level=level, parent_event_id=parent_id or None, other_entries=others
    )


def daemon_group_level(meta: dict[str, Any]) -> int | None:
    """The hop level of the mod_wsgi daemon group serving this request (None outside one)."""
    group = meta.get("mod_wsgi.process_group", "")
    if not group.startswith("auditgate-gw"):
        return None
    suffix = group.removeprefix("auditgate-gw")
    return int(suffix) if suffix.isdigit() else 0
