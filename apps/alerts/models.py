from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.alerts.choices import Grouping, Kind


class AlertRule(models.Model):
    """What makes an alert fire.  ``threshold`` and ``window_minutes`` mean, per kind:
    denials: ``threshold`` denials of one actor or token (``grouping``) within the window;
    sensitive_upstream: each allowed request (window 0), or the first of each caller in each
    window; sealing_stalled: the bound in minutes past the seal grace; verify_failed: unused."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    threshold = models.PositiveIntegerField(default=1)
    window_minutes = models.PositiveIntegerField(default=0)
    grouping = models.CharField(max_length=8, choices=Grouping.choices, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("id",)
        # What the API checks (apps.alerts.api.serializers), also for any other writer: a rule
        # the evaluator could not compute would stop every alert, not only its own.
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(kind=Kind.DENIALS) | (models.Q(window_minutes__gte=1) & ~models.Q(grouping="")),
                name="alerts_denials_window_grouping",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind=Kind.SEALING_STALLED) | models.Q(window_minutes__gte=1),
                name="alerts_stall_bound",
            ),
            models.CheckConstraint(condition=models.Q(threshold__gte=1), name="alerts_threshold_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class AlertQuerySet(models.QuerySet["Alert"]):
    def due(self, now: object) -> AlertQuerySet:
        """Not delivered yet and past its backoff: what the next delivery round posts."""
        return self.filter(delivered_at__isnull=True, next_attempt_at__lte=now).order_by("next_attempt_at", "id")


class Alert(models.Model):
    """One firing of a rule.  ``dedup_key`` names the thing it fired for (a burst, a request,
    a stall episode, a verification's problems): evaluating the same events again, or two
    evaluators at once, can never fire twice for it.  The rule's name and kind are copied so
    that an alert stays readable after its rule is deleted."""

    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    rule_name = models.CharField(max_length=100)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    fired_at = models.DateTimeField(default=timezone.now)
    subject = models.CharField(max_length=200, help_text="Who or what: an actor, a token key id, an upstream.")
    detail = models.JSONField(default=dict, help_text="Never a secret: key ids, counts, seqs.")
    event_ids = models.JSONField(default=list, help_text="The audit events involved (ids, i.e. seqs).")
    dedup_key = models.CharField(max_length=191, unique=True)
    # Delivery to the webhook, at least once: retried with a capped backoff until a 2xx.
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ("-fired_at", "-id")
        indexes = [
            models.Index(fields=("fired_at", "id"), name="alerts_fired"),
            models.Index(fields=("kind", "fired_at"), name="alerts_kind_fired"),
            models.Index(fields=("delivered_at", "next_attempt_at"), name="alerts_due"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_name}: {self.subject}"


class EvaluatorState(models.Model):
    """The evaluator's durable position, a row per name: ``trail`` (the last event id read and
    the ids below it not committed yet) and ``sealing_stall`` (the open stall episode)."""

    name = models.CharField(max_length=32, primary_key=True)
    last_id = models.BigIntegerField(default=0)
    data = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_id}"
