"""The access decision: which rule, if any, lets this caller make this request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from apps.gateway.choices import Reason
from apps.gateway.models import AccessRule, Upstream

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: Reason
    rule_id: int | None = None


def decide(user: AbstractUser, upstream: Upstream, method: str, path: str) -> Decision:
    """Default deny: allowed only when an enabled rule for the user or one of its groups matches."""
    if not upstream.enabled:
        return Decision(False, Reason.UPSTREAM_DISABLED)
    for rule in AccessRule.objects.applicable_to(user, upstream).order_by("id"):
        if rule.matches(method, path):
            return Decision(True, Reason.ALLOWED, rule.id)
    return Decision(False, Reason.NO_MATCHING_RULE)
