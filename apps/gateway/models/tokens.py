from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.gateway import scopes as token_scopes
from apps.gateway.choices import TokenStatus
from apps.gateway.validators import validate_cidrs

if TYPE_CHECKING:
    from apps.gateway.models.upstreams import Upstream

MAX_CIDRS = 50


def normalise_cidrs(values: Iterable[Any]) -> list[str]:
    """``["10.1.2.3/8"]`` -> ``["10.0.0.0/8"]``; ValueError for anything that is not a network."""
    values = list(values)
    if len(values) > MAX_CIDRS:
        raise ValueError(f"At most {MAX_CIDRS} networks.")
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except (AttributeError, ValueError):
            raise ValueError(f"{value!r} is not an IP network (e.g. 10.0.0.0/8 or 2001:db8::/32).") from None
    return list(dict.fromkeys(networks))


class APITokenQuerySet(models.QuerySet["APIToken"]):
    def touch(self, pk: int, *, now: datetime, ip: str | None, interval_seconds: float) -> int:
        """Record a use: one conditional UPDATE, a no-op if a use was recorded less than
        ``interval_seconds`` ago (by any process).  Returns the number of rows written."""
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - timedelta(seconds=interval_seconds))
        return self.filter(stale, pk=pk).update(last_used_at=now, last_used_ip=ip)


# What a token shows, in the admin and the API alike: never its secret, hash or pepper.
SHOWN_FIELDS = (
    "key_id", "label", "user", "status", "created_at", "created_by", "expires_at", "revoked_at", "enabled",
    "all_upstreams", "upstreams", "scopes", "allowed_cidrs", "last_used_at", "last_used_ip",
)  # fmt: skip


class APIToken(models.Model):
    """An API token of a user; the secret itself is never stored (see ``apps.gateway.tokens``).

    Scopes: which upstreams it may call through the gateway (``all_upstreams`` or
    ``upstreams``; access rules still apply), what it may do on the management API
    (``scopes``, see ``apps.gateway.scopes``; none: the gateway only), and from which
    source networks (``allowed_cidrs``; empty = anywhere).  The upstream limit also
    limits which upstreams' audit events, upstreams and rules it sees on the management API.
    """

    key_id = models.CharField(max_length=12, unique=True, editable=False, help_text="Public part of the token.")
    secret_hash = models.CharField(max_length=64, editable=False, help_text="Hex HMAC-SHA256(pepper, secret).")
    pepper_id = models.PositiveSmallIntegerField(editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    label = models.CharField(max_length=100, help_text="What the token is for, e.g. 'nightly report job'.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    all_upstreams = models.BooleanField(default=False, help_text="May call every upstream (rules still apply).")
    upstreams = models.ManyToManyField("gateway.Upstream", blank=True, related_name="api_tokens")
    # db_default: the previous release's processes insert tokens without this column during a deploy.
    scopes = models.JSONField(
        default=list,
        db_default=[],
        blank=True,
        validators=[token_scopes.validate_scopes],
        help_text='What it may do on the management API (/api/), e.g. ["audit:read"]; empty: the gateway only.',
    )
    allowed_cidrs = models.JSONField(
        default=list, blank=True, validators=[validate_cidrs], help_text="Source networks; empty means anywhere."
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    objects = APITokenQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at", "-id")
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.label} ({self.key_id})"

    def status(self, now: datetime) -> TokenStatus:
        """Revoked wins over expired, which wins over disabled."""
        if self.revoked_at is not None:
            return TokenStatus.REVOKED
        if now >= self.expires_at:
            return TokenStatus.EXPIRED
        if not self.enabled:
            return TokenStatus.DISABLED
        return TokenStatus.ACTIVE

    def is_usable(self, now: datetime) -> bool:
        """Active (not revoked, expired or disabled) and its user is active."""
        return self.status(now) == TokenStatus.ACTIVE and self.user.is_active

    def allows_upstream(self, upstream: Upstream) -> bool:
        """Scope only: whether this token may be used for ``upstream`` at all."""
        if self.all_upstreams:
            return True
        return any(scoped.pk == upstream.pk for scoped in self.upstreams.all())

    @property
    def uses_management_api(self) -> bool:
        """Whether it has any management scope (what the former ``management_api`` flag said)."""
        return bool(self.scopes)

    def has_scope(self, scope: str) -> bool:
        return scope in token_scopes.effective(self.scopes or ())

    def upstream_ids(self) -> frozenset[int] | None:
        """The upstreams it is limited to, or None if it is not (``all_upstreams``)."""
        if self.all_upstreams:
            return None
        return frozenset(upstream.pk for upstream in self.upstreams.all())

    def allows_source(self, ip: str | None) -> bool:
        if not self.allowed_cidrs:
            return True
        try:
            address = ipaddress.ip_address(ip or "")
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped  # "::ffff:10.0.0.1" from a dual-stack socket
        return any(address in ipaddress.ip_network(cidr, strict=False) for cidr in self.allowed_cidrs)
