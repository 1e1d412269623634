"""Each rule kind on the trail: windows, grouping, dedup on re-evaluation, late commits."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.alerts.models import Alert, AlertRule, EvaluatorState
from apps.alerts.tail import Tail
from apps.gateway.models import Upstream

pytestmark = pytest.mark.django_db


KEY_ID = "k3J9x2Qa"


def deny(make_event, *, token=KEY_ID, actor="mallory", at=None, **fields):
    at = at or timezone.now()
    return make_event(event_type="gateway.denied", decision="deny", reason="no_matching_rule", status=403,
                      token_key_id=token, actor_username=actor, occurred_at=at, **fields)  # fmt: skip


def test_the_default_rules_exist():
    kinds = set(AlertRule.objects.values_list("kind", flat=True))
    assert kinds == {"denials", "sensitive_upstream", "verify_failed", "sealing_stalled"}
    token_rule = AlertRule.objects.get(name="denials per token")
    assert (token_rule.threshold, token_rule.window_minutes, token_rule.grouping) == (10, 5, "token")


def test_ten_denials_of_one_token_within_five_minutes_fire_one_alert(evaluate, make_event):
    for _ in range(9):
        deny(make_event, actor="")
    assert evaluate() == []
    tenth = deny(make_event, actor="")
    [alert] = evaluate()
    assert (alert.rule_name, alert.kind, alert.subject) == ("denials per token", "denials", "token k3J9x2Qa")
    assert len(alert.event_ids) == 10 and tenth.pk in alert.event_ids
    assert alert.detail["denials"] == 10 and alert.detail["token_key_id"] == "k3J9x2Qa"
    deny(make_event, actor="")
    assert len(evaluate()) == 1  # the same burst, the same window: no second alert


def test_denials_spread_wider_than_the_window_do_not_fire(evaluate, make_event):
    start = timezone.now() - timedelta(minutes=30)
    for minute in range(10):
        deny(make_event, actor="", at=start + timedelta(minutes=minute * 2))
    assert evaluate() == []


def test_denials_are_counted_per_actor_across_tokens(evaluate, make_event):
    for i in range(10):
        deny(make_event, token=f"key{i}", actor="mallory")
    [alert] = evaluate()
    assert alert.subject == "actor mallory" and alert.detail["grouping"] == "actor"


def test_each_token_is_counted_on_its_own(evaluate, make_event):
    for i in range(10):
        deny(make_event, token=f"key{i % 2}", actor="")
    assert evaluate() == []


def test_allowed_requests_are_not_denials(evaluate, make_event):
    for _ in range(12):
        make_event(token_key_id="k3J9x2Qa")
    assert evaluate() == []


def test_a_rule_of_ones_own_fires_with_its_own_threshold_and_window(evaluate, make_event, only_rule):
    only_rule(kind="denials", threshold=3, window_minutes=1, grouping="token")
    old = timezone.now() - timedelta(minutes=2)
    deny(make_event, at=old)
    deny(make_event)
    deny(make_event)
    assert evaluate() == []  # the first is out of the 1-minute window
    deny(make_event)
    [alert] = evaluate()
    assert alert.rule_name == "under test" and alert.detail["window_minutes"] == 1


def test_a_disabled_rule_does_not_fire(evaluate, make_event):
    AlertRule.objects.filter(kind="denials").update(enabled=False)
    for _ in range(10):
        deny(make_event)
    assert evaluate() == []


@pytest.fixture
def sensitive():
    return Upstream.objects.create(name="payroll", base_url="http://payroll", sensitive=True)


def use(make_event, upstream, **fields):
    values = {"upstream_id": upstream.pk, "upstream_name": upstream.name, "token_key_id": "k3J9x2Qa"}
    return make_event(**{**values, **fields})


def test_a_sensitive_upstream_fires_at_the_attempts_insert(evaluate, make_event, sensitive):
    # Still open: no outcome yet (completed_at, status empty), as the gateway inserts it.
    attempt = use(make_event, sensitive, completed_at=None, status=None)
    [alert] = evaluate()
    assert alert.kind == "sensitive_upstream" and alert.event_ids == [attempt.pk]
    assert alert.subject == "alice on payroll" and alert.detail["token_key_id"] == "k3J9x2Qa"
    use(make_event, sensitive)
    assert len(evaluate()) == 2  # window 0: every use


def test_other_upstreams_and_denials_of_a_sensitive_one_do_not_fire(evaluate, make_event, sensitive):
    use(make_event, Upstream.objects.create(name="wiki", base_url="http://wiki"))
    use(make_event, sensitive, event_type="gateway.denied", decision="deny", status=403)
    assert evaluate() == []


def test_a_window_fires_once_per_caller_on_a_sensitive_upstream(evaluate, make_event, sensitive, only_rule):
    only_rule(kind="sensitive_upstream", window_minutes=60)
    use(make_event, sensitive)
    use(make_event, sensitive)
    use(make_event, sensitive, actor_username="bob")
    assert sorted(a.subject for a in evaluate()) == ["alice on payroll", "bob on payroll"]


def test_evaluating_the_same_events_again_never_fires_twice(evaluate, make_event, sensitive):
    for _ in range(10):
        deny(make_event)
    use(make_event, sensitive)
    first = evaluate()
    assert len(first) == 3  # per token, per actor, the sensitive use
    EvaluatorState.objects.filter(name="trail").update(last_id=0, data={})
    assert evaluate() == first


def gaps_above(top):
    # (ids of the rolled-back test transactions before it are gaps too, until the grace passes)
    return sorted(seq for seq in map(int, EvaluatorState.objects.get(name="trail").data["gaps"]) if seq > top)


def test_an_id_that_commits_after_a_higher_one_is_still_read(evaluate, make_event, sensitive):
    top = make_event().pk
    use(make_event, Upstream.objects.create(name="wiki", base_url="http://wiki"), id=top + 5)
    assert evaluate() == []
    state = EvaluatorState.objects.get(name="trail")
    assert state.last_id == top + 5 and gaps_above(top) == [top + 1, top + 2, top + 3, top + 4]
    late = use(make_event, sensitive, id=top + 2)  # its id was allocated before top + 5's
    [alert] = evaluate()
    assert alert.event_ids == [late.pk]
    assert gaps_above(top) == [top + 1, top + 3, top + 4]


def test_a_gap_older_than_the_seal_grace_is_a_rolled_back_insert(evaluate, make_event, settings):
    top = make_event().pk
    make_event(id=top + 3)
    evaluate()
    tail = Tail.load()
    assert {top + 1, top + 2} <= set(tail.gaps)
    tail.read(timezone.now() + timedelta(seconds=settings.AUDIT_SEAL_GRACE_SECONDS + 1))
    assert tail.gaps == {}


def stale(make_event, minutes):
    at = timezone.now() - timedelta(minutes=minutes)
    return make_event(occurred_at=at, recorded_at=at, completed_at=at)


def test_a_stalled_sealer_fires_once_per_episode(evaluate, make_event, only_rule, seal_settings):
    from apps.audit import sealing

    rule = only_rule(kind="sealing_stalled", window_minutes=10)
    stale(make_event, 5)
    assert evaluate() == []  # 5 minutes < grace + 10 minutes
    first = stale(make_event, 20)
    [alert] = evaluate()
    assert alert.event_ids == [first.pk] and alert.detail["oldest_unsealed_seq"] == first.pk
    assert len(evaluate()) == 1  # the same episode
    sealing.seal(limit=1_000_000)
    assert len(evaluate()) == 1
    assert EvaluatorState.objects.get(name=f"sealing_stall:{rule.pk}").data == {}  # the episode closed
    stale(make_event, 30)
    assert len(evaluate()) == 2  # a new episode


def test_an_attempt_still_open_is_not_a_stall_by_itself(evaluate, make_event, only_rule):
    only_rule(kind="sealing_stalled", window_minutes=10)
    at = timezone.now() - timedelta(minutes=30)
    make_event(occurred_at=at, recorded_at=at, completed_at=None, status=None)
    assert evaluate() == []


def test_alerts_name_key_ids_never_a_token(evaluate, make_event, make_user):
    from apps.gateway.tokens import create_token, default_expiry

    token, plaintext = create_token(user=make_user("mallory"), label="t", expires_at=default_expiry())
    for _ in range(10):
        deny(make_event, token=token.key_id)
    alerts = evaluate()
    assert {a.subject for a in alerts} == {f"token {token.key_id}", "actor mallory"}
    for alert in Alert.objects.all():
        assert plaintext not in json.dumps([alert.subject, alert.detail, alert.event_ids])


@pytest.mark.parametrize("fields", [
    {"kind": "denials", "window_minutes": 0, "grouping": "token"},
    {"kind": "denials", "window_minutes": 5, "grouping": ""},
    {"kind": "sealing_stalled", "window_minutes": 0},
    {"kind": "sensitive_upstream", "threshold": 0},
])  # fmt: skip
def test_the_database_refuses_a_rule_the_evaluator_could_not_compute(fields):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        AlertRule.objects.create(name="broken", **fields)
