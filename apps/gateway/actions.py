"""Changes to upstreams and rules, each written together with its audit event.

One transaction holds the change and the event: either both are stored or
neither.  The API's viewsets and the admin both go through these functions.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from django.db import models, transaction

from apps.audit import events


def snapshot(obj: models.Model | None) -> dict[str, Any]:
    """The concrete field values of ``obj``, JSON-ready (secrets are masked when recorded)."""
    if obj is None or obj.pk is None:
        return {}
    values = {}
    for field in obj._meta.concrete_fields:
        if field.name in ("created_at", "updated_at"):
            continue
        value = getattr(obj, field.attname)
        values[field.name] = value.isoformat() if isinstance(value, datetime | date | time) else value
    return values


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    keys = before.keys() | after.keys()
    return {key: [before.get(key), after.get(key)] for key in sorted(keys) if before.get(key) != after.get(key)}


def save(
    obj: models.Model | None, *, event_type: str, request: Any, before: dict[str, Any], save: Any = None
) -> models.Model:
    """Save ``obj`` (or call ``save()``, e.g. a serializer's, which returns the object) and
    record what changed since ``before`` (a ``snapshot`` taken before the change)."""
    with transaction.atomic():
        if save is None:
            obj.save()  # type: ignore[union-attr]
            saved = obj
        else:
            saved = save()
        events.record_change(event_type, saved, request=request, changes=_diff(before, snapshot(saved)))
    return saved


def delete(obj: models.Model, *, event_type: str, request: Any) -> None:
    with transaction.atomic():
        events.record_change(event_type, obj, request=request, changes=_diff(snapshot(obj), {}))
        obj.delete()
