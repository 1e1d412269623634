"""apps.core.mariadb.locks: one holder per lock name and database across connections (hosts),
names kept within MariaDB's 64 characters, and a holder that can tell it still holds its lock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from django.db import connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from apps.core.mariadb.locks import MAX_NAME_LENGTH, NamedLock, lock_name

pytestmark = pytest.mark.django_db

LOCK = NamedLock("test.locks")


@pytest.fixture
def rival() -> Iterator[BaseDatabaseWrapper]:
    """A second connection to the test database: another process, or another web host."""
    other = connections.create_connection("default")
    yield other
    other.close()


def test_a_second_connection_cannot_take_the_lock_while_the_first_holds_it(rival):
    theirs = replace(LOCK, connection=rival)
    with LOCK.holding(wait=0) as taken:
        assert taken
        assert not theirs.take(wait=0.2), "it waited 0.2 s and gave up"
    assert theirs.take(wait=0), "released when the block ended"
    with LOCK.holding(wait=0) as taken:
        assert not taken
    theirs.release()


def test_the_lock_is_named_after_the_database(rival):
    assert LOCK.name == f"auditgate.test.locks.{connection.settings_dict['NAME']}"
    rival.ensure_connection()  # to the same server; its locks are named for another database
    rival.settings_dict = {**rival.settings_dict, "NAME": "another_deployment"}
    theirs = replace(LOCK, connection=rival)
    assert theirs.name == "auditgate.test.locks.another_deployment"
    with LOCK.holding(wait=0) as taken:
        assert taken
        assert theirs.take(wait=0), "a deployment on the same server never takes turns with this one"
        theirs.release()


def test_a_connection_tells_whether_it_holds_the_lock(rival):
    theirs = replace(LOCK, connection=rival)
    assert not LOCK.held() and not theirs.held()
    with LOCK.holding(wait=0):
        assert LOCK.held() and not theirs.held()
    assert not LOCK.held()


def test_a_connection_that_was_replaced_no_longer_holds_its_lock(rival):
    theirs = replace(LOCK, connection=rival)
    assert theirs.take(wait=0)
    rival.close()  # a lost session; Django opens a new one on the next query
    assert not theirs.held()


def test_a_long_name_keeps_to_64_characters_and_stays_apart_from_its_neighbours():
    database = "d" * 40
    first, second = lock_name(f"siem.{'c' * 30}-1", database), lock_name(f"siem.{'c' * 30}-2", database)
    assert len(first) == len(second) == MAX_NAME_LENGTH
    assert first != second
    assert first.startswith("auditgate.siem.ccc")
    assert lock_name("alerts", "auditgate") == "auditgate.alerts.auditgate"
