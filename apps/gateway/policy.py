"""The access decision: may this caller make this request, and which rule says so?

Order of checks (the first that fails gives the reason):
1. the upstream is enabled (``upstream_disabled``) and allows the method (``method_not_allowed``, 405);
2. the token may be used on this upstream (``token_scope``);
3. the rules of the upstream whose subject is the user, one of its groups, or anyone:
   a rule *matches* when path, method, validity period, time window and source address
   all match.  Among matching rules the lowest priority number wins; at equal priority
   a deny wins (``denied_by_rule``).  Without a matching rule the request is denied
   (default deny), with the reason of the allow rule that came closest:
   ``method_not_allowed``, ``outside_time_window`` or ``source_ip_not_allowed``;
   otherwise ``no_matching_rule``.

Rules are compiled per upstream and cached per process for at most
``settings.POLICY_CACHE_SECONDS``, so a rule change takes effect within that bound.
"""

from __future__ import annotations

import ipaddress
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from django.conf import settings

from apps.gateway import paths
from apps.gateway.cache import TTLCache
from apps.gateway.choices import Effect, PathMatch, Reason, Subject
from apps.gateway.models import AccessRule, Upstream


@dataclass(frozen=True)
class AccessRequest:
    user_id: int
    group_ids: frozenset[int]
    upstream: Upstream
    method: str
    path: str
    source_ip: str | None
    at: datetime
    token: Any = None  # An APIToken, or None for a dry run without a token.


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: Reason
    rule_id: int | None = None
    # The deciding rule asks for the exchange's bodies to be kept as evidence (apps.audit.evidence).
    capture_evidence: bool = False


@dataclass(frozen=True)
class CompiledRule:
    id: int
    subject: str
    user_id: int | None
    group_id: int | None
    allow: bool
    priority: int
    methods: frozenset[str]
    glob: bool
    pattern: str
    case_insensitive: bool
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    days: frozenset[int]
    start: time | None
    end: time | None
    zone: zoneinfo.ZoneInfo
    valid_from: datetime | None
    valid_until: datetime | None
    capture_evidence: bool = False

    @classmethod
    def of(cls, rule: AccessRule) -> CompiledRule:
        return cls(
            id=rule.id,
            subject=rule.subject,
            user_id=rule.user_id,
            group_id=rule.group_id,
            allow=rule.effect == Effect.ALLOW,
            priority=rule.priority,
            methods=frozenset(rule.methods),
            glob=rule.path_match == PathMatch.GLOB,
            pattern=rule.path_pattern.lower() if rule.case_insensitive else rule.path_pattern,
            case_insensitive=rule.case_insensitive,
            networks=tuple(ipaddress.ip_network(c, strict=False) for c in rule.source_cidrs),
            days=frozenset(rule.days),
            start=rule.start_time,
            end=rule.end_time,
            zone=zoneinfo.ZoneInfo(rule.time_zone),
            valid_from=rule.valid_from,
            valid_until=rule.valid_until,
            capture_evidence=rule.capture_evidence,
        )

    def applies_to(self, request: AccessRequest) -> bool:
        if self.subject == Subject.ANY:
            return True
        if self.subject == Subject.USER:
            return self.user_id == request.user_id
        return self.group_id in request.group_ids

    def first_mismatch(self, request: AccessRequest) -> Reason | None:
        """None when the rule matches; otherwise the reason of the first condition that fails."""
        path = request.path.lower() if self.case_insensitive else request.path
        if not (paths.matches_glob if self.glob else paths.matches_prefix)(path, self.pattern):
            return Reason.NO_MATCHING_RULE
        if self.methods and request.method not in self.methods:
            return Reason.METHOD_NOT_ALLOWED
        if not self._in_time(request.at):
            return Reason.OUTSIDE_TIME_WINDOW
        if self.networks and not self._from_allowed_source(request.source_ip):
            return Reason.SOURCE_IP_NOT_ALLOWED
        return None

    def _in_time(self, at: datetime) -> bool:
        if (self.valid_from and at < self.valid_from) or (self.valid_until and at >= self.valid_until):
            return False
        local = at.astimezone(self.zone)
        if self.days and local.weekday() not in self.days:
            return False
        if self.start is None or self.end is None:
            return True
        now = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end  # The window wraps midnight.

    def _from_allowed_source(self, source_ip: str | None) -> bool:
        if not source_ip:
            return False
        try:
            address = ipaddress.ip_address(source_ip)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


# How close a near miss came: the further a rule got, the more useful its reason.
_CLOSENESS = {
    Reason.METHOD_NOT_ALLOWED: 1,
    Reason.OUTSIDE_TIME_WINDOW: 2,
    Reason.SOURCE_IP_NOT_ALLOWED: 3,
}

_rules_cache: TTLCache[tuple[CompiledRule, ...]] = TTLCache(settings.POLICY_CACHE_SECONDS)


def rules_of(upstream: Upstream) -> tuple[CompiledRule, ...]:
    def load() -> tuple[CompiledRule, ...]:
        rules = AccessRule.objects.filter(upstream_id=upstream.pk, enabled=True).order_by("priority", "id")
        return tuple(CompiledRule.of(rule) for rule in rules)

    return _rules_cache.get_or_load(upstream.pk, load)


def decide(request: AccessRequest, rules: tuple[CompiledRule, ...] | None = None) -> Verdict:
    upstream = request.upstream
    if not upstream.enabled:
        return Verdict(False, Reason.UPSTREAM_DISABLED)
    if request.method not in upstream.allowed_methods:
        return Verdict(False, Reason.METHOD_NOT_ALLOWED)
    token = request.token
    if token is not None and not token.allows_upstream(upstream):
        return Verdict(False, Reason.TOKEN_SCOPE)
    rules = rules_of(upstream) if rules is None else rules
    return _evaluate([rule for rule in rules if rule.applies_to(request)], request)


def _evaluate(rules: list[CompiledRule], request: AccessRequest) -> Verdict:
    matching: list[CompiledRule] = []
    near_miss: tuple[int, Reason, int] | None = None
    for rule in rules:
        mismatch = rule.first_mismatch(request)
        if mismatch is None:
            matching.append(rule)
        elif rule.allow and mismatch in _CLOSENESS:
            candidate = (_CLOSENESS[mismatch], mismatch, rule.id)
            if near_miss is None or candidate[0] > near_miss[0]:
                near_miss = candidate
    if matching:
        best = min(rule.priority for rule in matching)
        top = [rule for rule in matching if rule.priority == best]
        deny = next((rule for rule in top if not rule.allow), None)
        if deny is not None:
            return Verdict(False, Reason.DENIED_BY_RULE, deny.id)
        return Verdict(True, Reason.ALLOWED, top[0].id, capture_evidence=top[0].capture_evidence)
    if near_miss is not None:
        return Verdict(False, near_miss[1], near_miss[2])
    return Verdict(False, Reason.NO_MATCHING_RULE)
