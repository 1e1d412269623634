"""Audit reads from the replica (``apps.core.replica``): only inside a scope, only while healthy."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction
from django.http import Http404

from apps.audit.models import AuditEvent, AuditSeal
from apps.core import replica
from apps.core.replica import DOWN, Health, ReplicaRouter, judge, reads_from_replica, replica_reads

pytestmark = pytest.mark.django_db

OK = Health("ok", 0)
RUNNING = {"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": 3}


@pytest.fixture
def replica_health(monkeypatch):
    """A configured replica whose probe says what the test sets (``.health``)."""
    monkeypatch.setattr(replica, "configured", lambda: True)
    state = type("State", (), {"health": OK, "probes": 0})()

    def fake_probe() -> Health:
        state.probes += 1
        return state.health

    monkeypatch.setattr(replica, "probe", fake_probe)
    replica.forget()
    yield state
    replica.forget()


@pytest.fixture
def routed(settings, monkeypatch, replica_health):
    """The router installed; where it sends each read is recorded, and every read still runs on
    ``default`` (the test database has no replica)."""
    settings.DATABASE_ROUTERS = ["apps.core.replica.ReplicaRouter"]
    answers: list[tuple[str, str]] = []
    real = replica.read_alias

    def recording(model):
        answers.append((model.__name__, real(model)))
        return DEFAULT_DB_ALIAS

    monkeypatch.setattr(replica, "read_alias", recording)
    return answers


# --- the probe ---------------------------------------------------------------------------


def test_a_running_replica_within_the_lag_is_ok():
    assert judge(RUNNING, max_lag=30) == Health("ok", 3)


def test_a_replica_further_behind_than_the_lag_is_lagging():
    assert judge({**RUNNING, "Seconds_Behind_Master": 31}, max_lag=30) == Health("lagging", 31)


@pytest.mark.parametrize(
    "status",
    [
        {**RUNNING, "Slave_SQL_Running": "No", "Seconds_Behind_Master": None},
        {**RUNNING, "Slave_IO_Running": "Connecting"},
        {**RUNNING, "Seconds_Behind_Master": None},
        None,  # no replication configured at all
    ],
)
def test_a_replica_that_does_not_follow_the_primary_is_down(status):
    assert judge(status, max_lag=30).state == "down"


class _Unreachable:
    errors_occurred = False

    def cursor(self):
        raise OperationalError(2003, "Can't connect to MySQL server on 'db2'")

    def close(self):
        pass


def test_a_replica_that_refuses_connections_is_down_and_the_probe_does_not_raise(monkeypatch):
    monkeypatch.setattr(replica, "connections", {replica.REPLICA: _Unreachable()})  # no alias in tests
    assert replica.probe() == DOWN


def test_the_probe_runs_at_most_once_per_interval(replica_health):
    for _ in range(5):
        assert replica.health() == OK
    assert replica_health.probes == 1


# --- the router --------------------------------------------------------------------------


def test_reads_go_to_the_replica_only_inside_a_scope_and_only_for_its_models(replica_health):
    router = ReplicaRouter()
    assert router.db_for_read(AuditEvent) == DEFAULT_DB_ALIAS
    with replica_reads(AuditEvent):
        assert router.db_for_read(AuditEvent) == replica.REPLICA
        assert router.db_for_read(User) == DEFAULT_DB_ALIAS  # who the caller is: always the primary
        assert router.db_for_read(AuditSeal) == DEFAULT_DB_ALIAS
    assert router.db_for_read(AuditEvent) == DEFAULT_DB_ALIAS


@pytest.mark.parametrize("health", [Health("lagging", 45), Health("down", None), DOWN])
def test_reads_fall_back_to_the_primary_when_the_replica_is_not_healthy(replica_health, health):
    replica_health.health = health
    with replica_reads(AuditEvent):
        assert ReplicaRouter().db_for_read(AuditEvent) == DEFAULT_DB_ALIAS


def test_reads_inside_a_transaction_stay_on_the_primary(replica_health):
    with replica_reads(AuditEvent), transaction.atomic():
        assert ReplicaRouter().db_for_read(AuditEvent) == DEFAULT_DB_ALIAS


def test_writes_and_migrations_are_the_primary_s_only():
    router = ReplicaRouter()
    with replica_reads(AuditEvent):
        assert router.db_for_write(AuditEvent) == DEFAULT_DB_ALIAS
    assert router.allow_migrate(DEFAULT_DB_ALIAS, "audit") is True
    assert router.allow_migrate(replica.REPLICA, "audit") is False


def test_without_a_replica_nothing_is_routed():
    with replica_reads(AuditEvent):
        assert ReplicaRouter().db_for_read(AuditEvent) == DEFAULT_DB_ALIAS


# --- failures under a view -----------------------------------------------------------------


class _FailedReplica:
    errors_occurred = True  # what Django's error wrapper sets on the connection that raised

    def close(self):
        pass


def test_a_view_whose_replica_read_fails_runs_again_on_the_primary(replica_health, monkeypatch):
    monkeypatch.setattr(replica, "connections", {replica.REPLICA: _FailedReplica(), DEFAULT_DB_ALIAS:
                                                 connections[DEFAULT_DB_ALIAS]})  # fmt: skip
    ran_on = []

    @reads_from_replica(AuditEvent)
    def view():
        alias = replica.read_alias(AuditEvent)
        ran_on.append(alias)
        if alias == replica.REPLICA:
            raise OperationalError(2013, "Lost connection to server during query")
        return "page"

    assert view() == "page"
    assert ran_on == [replica.REPLICA, DEFAULT_DB_ALIAS]
    assert replica.health() == DOWN  # until the next probe, nobody tries it again


def test_an_error_of_the_primary_is_not_retried(replica_health):
    @reads_from_replica(AuditEvent)
    def view():
        raise OperationalError(2006, "MySQL server has gone away")

    with pytest.raises(OperationalError):
        view()


def test_a_detail_the_replica_has_not_received_yet_is_looked_up_on_the_primary(replica_health):
    ran_on = []

    @reads_from_replica(AuditEvent)
    def view():
        ran_on.append(replica.read_alias(AuditEvent))
        if ran_on[-1] == replica.REPLICA:
            raise Http404
        return "event"

    assert view() == "event"
    assert ran_on == [replica.REPLICA, DEFAULT_DB_ALIAS]


def test_an_export_whose_replica_fails_goes_on_from_the_primary_after_the_last_id(replica_health, monkeypatch):
    from apps.audit import exporting

    calls = []

    def pages(queryset, after, columns):
        calls.append((queryset.db, after))
        if queryset.db == replica.REPLICA:
            yield [(1,), (2,)]
            raise OperationalError(2013, "Lost connection to server during query")
        yield [(3,)]

    monkeypatch.setattr(exporting, "_pipelined_pages", pages)
    rows = [row for page in exporting._raw_pages(AuditEvent.objects.using(replica.REPLICA), []) for row in page]
    assert rows == [(1,), (2,), (3,)]
    assert calls == [(replica.REPLICA, 0), (DEFAULT_DB_ALIAS, 2)]


# --- which code opts in ------------------------------------------------------------------


def test_the_audit_reads_opt_in(routed, client_for, make_user, make_event):
    auditor = client_for(make_user(groups=("auditor",)))
    event = make_event()
    for url in ("/api/audit/events/", f"/api/audit/events/{event.pk}/", f"/api/audit/events/{event.pk}/chain/",
                "/api/audit/stats"):  # fmt: skip
        routed.clear()
        assert auditor.get(url).status_code == 200, url
        assert ("AuditEvent", replica.REPLICA) in routed, url
        assert all(alias == DEFAULT_DB_ALIAS for model, alias in routed if model != "AuditEvent"), url
    routed.clear()
    response = auditor.get("/api/audit/events/export/?format=ndjson")
    assert b"".join(response.streaming_content)
    assert ("AuditEvent", replica.REPLICA) in routed


def test_sealing_and_verification_never_read_from_the_replica(routed, make_event, settings, tmp_path):
    from apps.audit import sealing, witnessing
    from tests.audit.seals import KEY_ID, KEYS, LONG_AGO

    settings.AUDIT_SEAL_KEYS, settings.AUDIT_SEAL_KEY_ID = dict(KEYS), KEY_ID
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.jsonl")
    make_event(recorded_at=LONG_AGO)
    assert sealing.seal() is not None
    assert sealing.verify(keys=KEYS, checkpoint_file=settings.AUDIT_CHECKPOINT_FILE).ok
    assert witnessing.witness(tmp_path / "witness.jsonl", KEYS).ok
    assert routed and all(alias == DEFAULT_DB_ALIAS for _, alias in routed)


# --- health ------------------------------------------------------------------------------


def test_health_without_a_replica_is_unchanged(client):
    assert client.get("/api/health/").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "health", [Health("ok", 2), Health("lagging", 95), Health("down", None)], ids=lambda h: h.state
)
def test_health_shows_the_replica_and_stays_200_whatever_its_state(client, replica_health, health):
    replica_health.health = health
    response = client.get("/api/health/")
    assert (response.status_code, response.json()) == (
        200, {"status": "ok", "replica": {"state": health.state, "lag_seconds": health.lag_seconds}}
    )  # fmt: skip


def test_the_dashboard_statistics_say_where_they_were_read_from(routed, client_for, make_user):
    body = client_for(make_user(groups=("auditor",))).get("/api/audit/stats").json()
    assert (body["read_from"], body["replica"]) == (DEFAULT_DB_ALIAS, {"state": "ok", "lag_seconds": 0})
