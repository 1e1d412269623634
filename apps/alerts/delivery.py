"""Delivering alerts to the webhook: one signed JSON alert per POST (apps.core.webhooks), at
least once.  A failure is retried with a capped exponential backoff until the receiver
answers 2xx; ``Idempotency-Key`` lets it drop a repeat (e.g. after a timeout that was a success)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.alerts.models import Alert
from apps.core import webhooks
from apps.core.webhooks import DeliveryFailed, Webhook

FIRST_RETRY_SECONDS = 5
MAX_RETRY_SECONDS = 600  # a receiver down for hours gets an attempt every 10 minutes
ROUND_LIMIT = 50
CONTENT_TYPE = "application/json"


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: 5 s, 10 s, 20 s ... at most 10 minutes."""
    return timedelta(seconds=min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** min(attempts - 1, 20)))


def payload(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.pk, "rule": alert.rule_id, "rule_name": alert.rule_name, "kind": alert.kind,
        "fired_at": alert.fired_at.isoformat(), "subject": alert.subject, "detail": alert.detail,
        "event_ids": alert.event_ids, "gateway": settings.GATEWAY_ID,
    }  # fmt: skip


def webhook(url: str = "", ca_file: str = "", secret_file: str = "") -> Webhook | None:
    """The configured hook (arguments override the settings), or None when no URL is set."""
    url = url or settings.ALERTS_WEBHOOK_URL
    if not url:
        return None
    path = secret_file or settings.ALERTS_WEBHOOK_SECRET_FILE
    if not path:
        raise ImproperlyConfigured("Set AUDITGATE_ALERTS_WEBHOOK_SECRET_FILE: alerts are signed.")
    return webhooks.configured(
        url, webhooks.read_secret(path), ca_file or settings.ALERTS_WEBHOOK_CA_FILE,
        url_setting="AUDITGATE_ALERTS_WEBHOOK_URL", key_setting=path,
    )  # fmt: skip


def deliver_due(hook: Webhook, now: datetime, *, budget_seconds: float = 20) -> tuple[int, int]:
    """Post the alerts that are due, oldest first; (delivered, failed).  The round stops at the
    first failure (a receiver that is down is not hammered with the whole backlog) and after
    ``budget_seconds``, so an evaluation pass is never held up long."""
    delivered = 0
    deadline = time.monotonic() + budget_seconds
    for alert in Alert.objects.due(now)[:ROUND_LIMIT]:
        if time.monotonic() > deadline:
            break
        if not deliver(hook, alert, now):
            return delivered, 1
        delivered += 1
    return delivered, 0


def deliver(hook: Webhook, alert: Alert, now: datetime) -> bool:
    body = json.dumps(payload(alert), separators=(",", ":"), sort_keys=True).encode()
    headers = {"Idempotency-Key": f"auditgate-alert-{alert.pk}", "X-Auditgate-Alert-Id": str(alert.pk)}
    alert.attempts += 1
    try:
        hook.post(body, CONTENT_TYPE, headers)
    except DeliveryFailed as error:
        alert.last_error = str(error)[:500]
        alert.next_attempt_at = now + backoff(alert.attempts)
        alert.save(update_fields=("attempts", "last_error", "next_attempt_at"))
        return False
    alert.delivered_at, alert.last_error = now, ""
    alert.save(update_fields=("attempts", "last_error", "delivered_at"))
    return True
