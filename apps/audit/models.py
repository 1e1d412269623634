from __future__ import annotations

from django.conf import settings
from django.db import models


class Decision(models.TextChoices):
    ALLOW = "allow"
    DENY = "deny"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: object) -> int:
        raise TypeError("Audit events are append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("Audit events are append-only.")


class AuditEvent(models.Model):
    """One audited event: a gateway attempt (allowed or denied), an authentication
    failure, or a change to tokens, upstreams or rules.  Gateway attempts are written
    once, when their outcome is known.  ``event_type`` names come from ``apps.audit.events``.

    Rows are append-only: the QuerySet and the instance refuse updates and deletes,
    and neither the API nor the admin offers them.  Snapshots (``actor_username``,
    ``upstream_name``) keep an event readable after its subjects are deleted.
    """

    event_type = models.CharField(max_length=64, default="gateway.request")
    occurred_at = models.DateTimeField(db_index=True)
    duration_ms = models.FloatField(default=0, help_text="From the start of Django's handling to the last byte sent.")
    request_id = models.CharField(max_length=64, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True)
    token_key_id = models.CharField(max_length=32, blank=True, help_text="Never the secret.")
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    # Plain values, not a foreign key: deleting an upstream must not rewrite its history.
    upstream_id = models.BigIntegerField(null=True, blank=True)
    upstream_name = models.CharField(max_length=64, blank=True)
    method = models.CharField(max_length=16, blank=True)
    path = models.CharField(max_length=2000, blank=True)
    query = models.CharField(max_length=2000, blank=True)
    decision = models.CharField(max_length=8, choices=Decision.choices, blank=True)
    reason = models.CharField(max_length=64, blank=True)
    rule_id = models.BigIntegerField(null=True, blank=True)
    status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The status the client received.")
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=64, blank=True)
    request_bytes = models.BigIntegerField(default=0)
    response_bytes = models.BigIntegerField(default=0)
    injected_credential = models.CharField(
        max_length=64,
        blank=True,
        help_text="Which upstream credential was injected (its header name), never its value.",
    )
    # Changes to tokens, upstreams and rules: what changed, secrets masked.
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(null=True, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ("-id",)
        # Every filter of the API is paired with the id so a filtered, id-ordered
        # cursor page is an index range scan.
        indexes = [
            models.Index(fields=("event_type", "id"), name="audit_type_id"),
            models.Index(fields=("actor_username", "id"), name="audit_actor_id"),
            models.Index(fields=("upstream_name", "id"), name="audit_upstream_id"),
            models.Index(fields=("decision", "id"), name="audit_decision_id"),
            models.Index(fields=("status", "id"), name="audit_status_id"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.decision} {self.method} {self.upstream_name}{self.path}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise TypeError("Audit events are append-only.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise TypeError("Audit events are append-only.")
