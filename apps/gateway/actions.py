"""Changes to upstreams, rules and users, each written together with its audit event.

One transaction holds the change and the event: either both are stored or
neither.  The API's viewsets, the admin and the management commands go through
these functions (tokens through ``apps.gateway.tokens``), each naming who acts
(``acting``, an ``apps.audit.acting.Acting``).
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from django.contrib.auth import get_user_model
from django.db import models, transaction

from apps.audit import events
from apps.audit.acting import Acting


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
    obj: models.Model | None, *, event_type: str, acting: Acting, before: dict[str, Any], save: Any = None
) -> models.Model:
    """Save ``obj`` (or call ``save()``, e.g. a serializer's, which returns the object) and
    record what changed since ``before`` (a ``snapshot`` taken before the change)."""
    with transaction.atomic():
        if save is None:
            assert obj is not None  # without save(), the object to save
            obj.save()
            saved = obj
        else:
            saved = save()
        events.record_change(event_type, saved, acting=acting, changes=_diff(before, snapshot(saved)))
    return saved


def delete(obj: models.Model, *, event_type: str, acting: Acting) -> None:
    with transaction.atomic():
        events.record_change(event_type, obj, acting=acting, changes=_diff(snapshot(obj), {}))
        obj.delete()


def create_user(
    username: str, *, acting: Acting, superuser: bool = False, email: str = "", password: str | None = None
) -> Any:  # the project's User model (get_user_model())
    """Create a user (a superuser if ``superuser``; no ``password``: it cannot log in, only
    use tokens) and its ``user.created`` event, recorded like a creation in the admin."""
    users = get_user_model().objects
    create = users.create_superuser if superuser else users.create_user
    with transaction.atomic():
        user = create(username=username, email=email, password=password)
        events.record_change(events.USER_CREATED, user, acting=acting, changes=_diff({}, snapshot(user)))
    return user
