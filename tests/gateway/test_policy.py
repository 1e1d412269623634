"""The policy engine, table-driven: every reason code, priorities, time zones and DST edges."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from apps.gateway.choices import Reason
from apps.gateway.models import AccessRule, Upstream
from apps.gateway.policy import AccessRequest, CompiledRule, decide

pytestmark = pytest.mark.django_db

ALICE, BOB, OPS = 1, 2, 10
MONDAY_NOON_UTC = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def rule(rule_id: int = 1, **fields) -> CompiledRule:
    values = {"upstream_id": 1, "subject": "user", "user_id": ALICE, "methods": ["GET"], "path_pattern": "/"}
    return CompiledRule.of(AccessRule(id=rule_id, **{**values, **fields}))


def request(upstream: Upstream | None = None, **fields) -> AccessRequest:
    values = {
        "user_id": ALICE,
        "group_ids": frozenset(),
        "upstream": upstream or Upstream(id=1, name="crm", base_url="http://crm"),
        "method": "GET",
        "path": "/reports/q1",
        "source_ip": "10.1.2.3",
        "at": MONDAY_NOON_UTC,
    }
    return AccessRequest(**{**values, **fields})


CASES = [
    # (description, rules, request overrides, expected (allowed, reason, rule id))
    ("default deny without rules", [], {}, (False, Reason.NO_MATCHING_RULE, None)),
    ("a user rule allows", [rule()], {}, (True, Reason.ALLOWED, 1)),
    ("another user's rule does not", [rule(user_id=BOB)], {}, (False, Reason.NO_MATCHING_RULE, None)),
    (
        "a group rule allows members",
        [rule(subject="group", user_id=None, group_id=OPS)],
        {"group_ids": frozenset({OPS})},
        (True, Reason.ALLOWED, 1),
    ),
    (
        "a group rule ignores others",
        [rule(subject="group", user_id=None, group_id=OPS)],
        {},
        (False, Reason.NO_MATCHING_RULE, None),
    ),
    (
        "an 'any' rule allows every caller",
        [rule(subject="any", user_id=None)],
        {"user_id": BOB},
        (True, Reason.ALLOWED, 1),
    ),
    (
        "prefix on segment boundaries",
        [rule(path_pattern="/reports")],
        {"path": "/reportsX"},
        (False, Reason.NO_MATCHING_RULE, None),
    ),
    (
        "glob * stays in a segment",
        [rule(path_match="glob", path_pattern="/reports/*")],
        {"path": "/reports/q1/x"},
        (False, Reason.NO_MATCHING_RULE, None),
    ),
    (
        "glob ** crosses segments",
        [rule(path_match="glob", path_pattern="/reports/**")],
        {"path": "/reports/q1/x"},
        (True, Reason.ALLOWED, 1),
    ),
    ("empty methods mean any", [rule(methods=[])], {"method": "DELETE"}, (True, Reason.ALLOWED, 1)),
    ("a method outside the rule", [rule()], {"method": "POST"}, (False, Reason.METHOD_NOT_ALLOWED, 1)),
    ("source inside the CIDRs", [rule(source_cidrs=["10.0.0.0/8"])], {}, (True, Reason.ALLOWED, 1)),
    ("source outside the CIDRs", [rule(source_cidrs=["192.168.0.0/16"])], {}, (False, Reason.SOURCE_IP_NOT_ALLOWED, 1)),
    (
        "IPv6 source against IPv4 CIDRs",
        [rule(source_cidrs=["10.0.0.0/8"])],
        {"source_ip": "2001:db8::1"},
        (False, Reason.SOURCE_IP_NOT_ALLOWED, 1),
    ),
    ("not yet valid", [rule(valid_from=datetime(2026, 12, 1, tzinfo=UTC))], {}, (False, Reason.OUTSIDE_TIME_WINDOW, 1)),
    ("valid_until is exclusive", [rule(valid_until=MONDAY_NOON_UTC)], {}, (False, Reason.OUTSIDE_TIME_WINDOW, 1)),
    (
        "inside valid period",
        [rule(valid_from=datetime(2026, 1, 1, tzinfo=UTC), valid_until=datetime(2027, 1, 1, tzinfo=UTC))],
        {},
        (True, Reason.ALLOWED, 1),
    ),
    ("weekdays only, on a Monday", [rule(days=[0, 1, 2, 3, 4])], {}, (True, Reason.ALLOWED, 1)),
    ("weekends only, on a Monday", [rule(days=[5, 6])], {}, (False, Reason.OUTSIDE_TIME_WINDOW, 1)),
    ("office hours in UTC", [rule(start_time=time(9), end_time=time(17))], {}, (True, Reason.ALLOWED, 1)),
    (
        "end time is exclusive",
        [rule(start_time=time(9), end_time=time(12))],
        {},
        (False, Reason.OUTSIDE_TIME_WINDOW, 1),
    ),
    # 12:00 UTC is 21:00 in Tokyo and 07:00 in New York (EST in November).
    (
        "a window in another time zone",
        [rule(start_time=time(20), end_time=time(22), time_zone="Asia/Tokyo")],
        {},
        (True, Reason.ALLOWED, 1),
    ),
    (
        "New York is not at work at 07:00",
        [rule(start_time=time(9), end_time=time(17), time_zone="America/New_York")],
        {},
        (False, Reason.OUTSIDE_TIME_WINDOW, 1),
    ),
    (
        "a window across midnight",
        [rule(start_time=time(22), end_time=time(2), time_zone="Asia/Tokyo")],
        {"at": datetime(2026, 11, 23, 14, 30, tzinfo=UTC)},
        (True, Reason.ALLOWED, 1),
    ),
    (
        "the day is the local day",
        [rule(days=[1], time_zone="Asia/Tokyo")],  # Tuesday in Tokyo
        {"at": datetime(2026, 11, 23, 16, 0, tzinfo=UTC)},
        (True, Reason.ALLOWED, 1),
    ),
    # DST: on 2026-03-29 Berlin jumps from 02:00 to 03:00; 01:30 UTC is 03:30 CEST.
    (
        "DST spring forward",
        [rule(start_time=time(3), end_time=time(4), time_zone="Europe/Berlin")],
        {"at": datetime(2026, 3, 29, 1, 30, tzinfo=UTC)},
        (True, Reason.ALLOWED, 1),
    ),
    # On 2026-10-25 Berlin repeats 02:00-03:00: both 00:30 and 01:30 UTC are 02:30 local.
    (
        "DST fall back, first 02:30",
        [rule(start_time=time(2), end_time=time(3), time_zone="Europe/Berlin")],
        {"at": datetime(2026, 10, 25, 0, 30, tzinfo=UTC)},
        (True, Reason.ALLOWED, 1),
    ),
    (
        "DST fall back, second 02:30",
        [rule(start_time=time(2), end_time=time(3), time_zone="Europe/Berlin")],
        {"at": datetime(2026, 10, 25, 1, 30, tzinfo=UTC)},
        (True, Reason.ALLOWED, 1),
    ),
    (
        "a deny rule denies",
        [rule(1), rule(2, effect="deny", path_pattern="/reports")],
        {},
        (False, Reason.DENIED_BY_RULE, 2),
    ),
    (
        "at equal priority deny wins",
        [rule(1, priority=10), rule(2, priority=10, effect="deny")],
        {},
        (False, Reason.DENIED_BY_RULE, 2),
    ),
    (
        "a lower priority number wins over a deny",
        [rule(1, priority=5), rule(2, priority=10, effect="deny")],
        {},
        (True, Reason.ALLOWED, 1),
    ),
    (
        "a deny with a lower number wins",
        [rule(1, priority=10), rule(2, priority=5, effect="deny")],
        {},
        (False, Reason.DENIED_BY_RULE, 2),
    ),
    (
        "a deny that does not match is ignored",
        [rule(1), rule(2, effect="deny", methods=["POST"])],
        {},
        (True, Reason.ALLOWED, 1),
    ),
    (
        "the closest near miss explains",
        [rule(1, methods=["POST"]), rule(2, source_cidrs=["192.168.0.0/16"])],
        {},
        (False, Reason.SOURCE_IP_NOT_ALLOWED, 2),
    ),
]


@pytest.mark.parametrize(("rules", "overrides", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_policy_decides(rules, overrides, expected):
    decision = decide(request(**overrides), tuple(rules))
    assert (decision.allowed, decision.reason, decision.rule_id) == expected


def test_a_disabled_upstream_denies_before_any_rule():
    upstream = Upstream(id=1, name="crm", base_url="http://crm", enabled=False)
    assert decide(request(upstream), (rule(),)).reason == Reason.UPSTREAM_DISABLED


def test_the_upstreams_methods_bound_every_rule():
    upstream = Upstream(id=1, name="crm", base_url="http://crm", allowed_methods=["GET"])
    decision = decide(request(upstream, method="DELETE"), (rule(methods=[]),))
    assert (decision.reason, decision.rule_id) == (Reason.METHOD_NOT_ALLOWED, None)


class Token:
    def __init__(self, allowed: bool):
        self.allowed = allowed

    def allows_upstream(self, upstream) -> bool:
        return self.allowed


def test_a_token_scoped_to_other_upstreams_is_refused():
    assert decide(request(token=Token(False)), (rule(),)).reason == Reason.TOKEN_SCOPE
    assert decide(request(token=Token(True)), (rule(),)).allowed


def test_rules_are_read_from_the_database_and_cached_at_most_a_second(make_user, monkeypatch):
    from apps.gateway import policy

    clock = [1000.0]
    monkeypatch.setattr(policy._rules_cache, "_clock", lambda: clock[0])
    policy._rules_cache.clear()
    alice = make_user("alice")
    upstream = Upstream.objects.create(name="crm", base_url="http://crm.internal", internal=True)
    access = request(upstream, user_id=alice.pk)
    assert decide(access).reason == Reason.NO_MATCHING_RULE
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"])
    clock[0] += 0.5
    assert decide(access).reason == Reason.NO_MATCHING_RULE  # still the cached view
    clock[0] += 0.6
    assert decide(access).allowed  # > 1 s later the change is seen
    AccessRule.objects.filter(upstream=upstream).update(enabled=False)
    clock[0] += 1.1
    assert not decide(access).allowed
