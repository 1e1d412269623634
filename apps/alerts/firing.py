"""Firing an alert: at most once per dedup key, whoever evaluates and however often."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from apps.alerts.models import Alert, AlertRule


def fire(rule: AlertRule, key: str, *, subject: str, detail: dict[str, Any], event_ids: list[int]) -> Alert | None:
    """The new alert, or None when one with this key exists already (``key`` is prefixed with
    the rule's id, so two rules of a kind fire each their own)."""
    if already_fired(rule, key):
        return None
    dedup_key = f"{rule.pk}:{key}"[:191]
    try:
        with transaction.atomic():  # a savepoint: a concurrent evaluator may have won the key
            alert = Alert.objects.create(
                rule=rule, rule_name=rule.name, kind=rule.kind, subject=subject[:200], detail=detail,
                event_ids=event_ids, dedup_key=dedup_key,
            )  # fmt: skip
    except IntegrityError:
        return None
    return alert


def already_fired(rule: AlertRule, key: str) -> bool:
    return Alert.objects.filter(dedup_key=f"{rule.pk}:{key}"[:191]).exists()
