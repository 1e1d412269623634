"""apps.core.mariadb: a persistent connection is pinged before a request only after it was
idle, and a connection that failed is never trusted without a ping."""

from __future__ import annotations

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection, connections

from apps.core.mariadb import base

# Autocommit, as in production: inside a test transaction Django would drop the connection.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pings(monkeypatch):
    """Counts the health-check pings (``is_usable``) of the default connection."""
    assert connection.health_check_enabled, "settings: CONN_HEALTH_CHECKS is on"
    count = [0]
    real = connection.is_usable

    def counted() -> bool:
        count[0] += 1
        return real()

    monkeypatch.setattr(connection, "is_usable", counted)
    return count


def a_request() -> None:
    """What Django's handler does around a view that runs one query."""
    request_started.send(sender=None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    request_finished.send(sender=None)


def test_the_backend_is_in_use():
    assert isinstance(connections["default"], base.DatabaseWrapper)


def test_a_connection_that_answered_moments_ago_is_not_pinged(pings):
    a_request()  # a connection that never answered a request: pinged (or opened fresh)
    before = pings[0]
    a_request()
    a_request()
    assert pings[0] == before


def test_an_idle_connection_is_pinged_before_it_is_used(pings):
    a_request()
    a_request()
    before = pings[0]
    connection._answered_at -= base.HEALTH_CHECK_AFTER_IDLE + 0.1  # as if idle for that long
    a_request()
    assert pings[0] == before + 1


def test_a_connection_whose_request_failed_is_pinged_before_it_is_trusted(pings):
    a_request()
    request_started.send(sender=None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.errors_occurred = True  # what a DatabaseError through Django's wrapper sets
    before = pings[0]
    request_finished.send(sender=None)
    assert pings[0] == before + 1  # Django's own check of a connection that raised
    assert connection.connection is not None  # it answered: kept
