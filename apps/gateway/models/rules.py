from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.gateway.choices import Effect, PathMatch, Subject
from apps.gateway.validators import (
    validate_cidrs,
    validate_days,
    validate_methods,
    validate_path_prefix,
    validate_timezone,
)


class AccessRule(models.Model):
    """One rule of the policy: who may (or may not) call what, from where, and when.

    The policy is evaluated in ``apps.gateway.policy``: default deny; among the rules
    that match a request, the lowest ``priority`` number wins and at equal priority a
    deny wins.  Empty lists (methods, CIDRs, days) mean "any".
    """

    upstream = models.ForeignKey("gateway.Upstream", on_delete=models.CASCADE, related_name="rules")
    subject = models.CharField(max_length=8, choices=Subject.choices, default=Subject.USER)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="access_rules"
    )
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="access_rules"
    )
    effect = models.CharField(max_length=5, choices=Effect.choices, default=Effect.ALLOW)
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower numbers are considered first.")
    methods = models.JSONField(default=list, blank=True, validators=[validate_methods], help_text="Empty: any.")
    path_match = models.CharField(max_length=6, choices=PathMatch.choices, default=PathMatch.PREFIX)
    path_pattern = models.CharField(max_length=500, default="/", validators=[validate_path_prefix])
    # For upstreams whose paths are case-insensitive (IIS, some Java servers): /ADMIN is /admin there.
    case_insensitive = models.BooleanField(default=False, help_text="Match the path pattern ignoring letter case.")
    source_cidrs = models.JSONField(default=list, blank=True, validators=[validate_cidrs], help_text="Empty: any.")
    days = models.JSONField(default=list, blank=True, validators=[validate_days], help_text="0 = Monday; empty: any.")
    start_time = models.TimeField(null=True, blank=True, help_text="Local time in time_zone; with end_time.")
    end_time = models.TimeField(null=True, blank=True, help_text="Exclusive; before start_time wraps midnight.")
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    # Evidence capture (apps.audit.evidence): also when the upstream does not ask for it.
    capture_evidence = models.BooleanField(
        default=False, help_text="Keep the bodies of the calls this rule allows as evidence (as the upstream's flag)."
    )
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("upstream", "priority", "id")
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(subject="user", user__isnull=False, group__isnull=True)
                    | Q(subject="group", user__isnull=True, group__isnull=False)
                    | Q(subject="any", user__isnull=True, group__isnull=True)
                ),
                name="accessrule_subject_consistent",
                violation_error_message="A rule names a user, a group, or neither (any authenticated caller).",
            ),
            models.CheckConstraint(
                condition=Q(start_time__isnull=True, end_time__isnull=True)
                | Q(start_time__isnull=False, end_time__isnull=False),
                name="accessrule_time_window_complete",
                violation_error_message="Give both start_time and end_time, or neither.",
            ),
        ]

    def __str__(self) -> str:
        subject = {"user": f"user {self.user}", "group": f"group {self.group}"}.get(self.subject, "anyone")
        methods = ",".join(self.methods) or "*"
        return f"#{self.pk} {self.effect} {subject} {methods} {self.upstream}:{self.path_pattern}"
