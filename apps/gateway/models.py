from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.gateway import paths
from apps.gateway.choices import HTTP_METHODS
from apps.gateway.validators import validate_base_url, validate_path_prefix

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser


class Upstream(models.Model):
    """An internal HTTP service reachable through ``/gw/<name>/``."""

    name = models.SlugField(max_length=64, unique=True, help_text="Used in the URL: /gw/<name>/...")
    base_url = models.CharField(max_length=500, validators=[validate_base_url])
    enabled = models.BooleanField(default=True)
    # connect + read stay below mod_wsgi's socket-timeout (45 s, apache/vhost.conf) so the
    # gateway always answers with its own 504 before Apache gives up on the daemon.
    connect_timeout = models.FloatField(
        default=5.0, validators=[MinValueValidator(0.1), MaxValueValidator(5.0)], help_text="Seconds."
    )
    read_timeout = models.FloatField(
        default=30.0, validators=[MinValueValidator(0.1), MaxValueValidator(38.0)], help_text="Seconds."
    )
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def url_for(self, path: str, query: str) -> str:
        url = self.base_url.rstrip("/") + paths.encode(path)
        return f"{url}?{query}" if query else url


class AccessRuleQuerySet(models.QuerySet["AccessRule"]):
    def applicable_to(self, user: AbstractUser, upstream: Upstream) -> AccessRuleQuerySet:
        """Enabled rules of ``upstream`` whose subject is ``user`` or one of its groups."""
        return self.filter(upstream=upstream, enabled=True).filter(Q(user=user) | Q(group__in=user.groups.all()))


class AccessRule(models.Model):
    """Allows a user or a group to call some methods under a path prefix of an upstream.

    Anything no rule allows is denied (default deny).
    """

    upstream = models.ForeignKey(Upstream, on_delete=models.CASCADE, related_name="rules")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="access_rules"
    )
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="access_rules"
    )
    methods = models.JSONField(default=list, help_text=f"Some of {', '.join(HTTP_METHODS)}.")
    path_prefix = models.CharField(max_length=500, default="/", validators=[validate_path_prefix])
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccessRuleQuerySet.as_manager()

    class Meta:
        ordering = ("upstream", "id")
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True) | Q(user__isnull=True, group__isnull=False),
                name="accessrule_exactly_one_subject",
                violation_error_message="A rule applies to exactly one user or one group.",
            )
        ]

    def __str__(self) -> str:
        subject = f"user {self.user}" if self.user_id else f"group {self.group}"
        return f"{subject}: {','.join(self.methods)} {self.upstream}{self.path_prefix}"

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and paths.matches_prefix(path, self.path_prefix)
