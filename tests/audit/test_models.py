import pytest

from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_events_cannot_be_changed_once_written(make_event):
    event = make_event(status=403)
    event.status = 200
    with pytest.raises(TypeError, match="append-only"):
        event.save()
    with pytest.raises(TypeError, match="append-only"):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).status == 403


def test_querysets_refuse_bulk_updates_and_deletes(make_event):
    make_event(status=403)
    with pytest.raises(TypeError):
        AuditEvent.objects.update(status=200)
    with pytest.raises(TypeError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.filter(status=403).count() == 1


def test_events_survive_the_deletion_of_their_actor(make_user, make_event):
    alice = make_user("alice")
    event = make_event(actor=alice, actor_username="alice")
    alice.delete()
    event = AuditEvent.objects.get(pk=event.pk)
    assert (event.actor_id, event.actor_username) == (None, "alice")


def test_the_prepared_insert_stores_what_the_orm_would(make_user):
    from django.forms.models import model_to_dict
    from django.utils import timezone

    alice = make_user("alice")
    now = timezone.now()
    fields = {"occurred_at": now, "recorded_at": now, "request_id": "same", "actor_id": alice.pk,
              "actor_groups": ["ops", "été"], "path": "/é?x", "client_aborted": True, "ttfb_ms": 1.5}  # fmt: skip
    by_orm = AuditEvent.objects.create(**fields)
    by_insert = AuditEvent.objects.get(pk=AuditEvent.objects.insert(**fields))
    assert by_insert.pk == by_orm.pk + 1
    assert {**model_to_dict(by_insert), "id": None} == {**model_to_dict(by_orm), "id": None}
    with pytest.raises(TypeError, match="Not audit event fields"):
        AuditEvent.objects.insert(request_id="x", colour="red")


def test_an_outcome_is_written_once_and_only_to_outcome_fields(make_event):
    from django.utils import timezone

    event = make_event(completed_at=None, status=None)
    assert AuditEvent.objects.record_outcome(event.pk, completed_at=timezone.now(), status=204, client_aborted=True)
    assert not AuditEvent.objects.record_outcome(event.pk, completed_at=timezone.now(), status=500)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.status, stored.client_aborted) == (204, True)
