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
