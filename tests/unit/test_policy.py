import pytest

from apps.gateway.choices import Reason
from apps.gateway.models import AccessRule, Upstream
from apps.gateway.policy import decide

pytestmark = pytest.mark.django_db


@pytest.fixture
def upstream():
    return Upstream.objects.create(name="crm", base_url="http://127.0.0.1:9")


def test_default_is_deny(make_user, upstream):
    decision = decide(make_user(), upstream, "GET", "/x")
    assert (decision.allowed, decision.reason, decision.rule_id) == (False, Reason.NO_MATCHING_RULE, None)


def test_a_user_rule_allows_its_methods_under_its_prefix(make_user, upstream):
    alice = make_user()
    rule = AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"], path_prefix="/reports")
    assert decide(alice, upstream, "GET", "/reports/2024").rule_id == rule.id
    assert decide(alice, upstream, "GET", "/reports").allowed
    assert not decide(alice, upstream, "POST", "/reports/2024").allowed
    assert not decide(alice, upstream, "GET", "/reportsX").allowed
    assert not decide(make_user(), upstream, "GET", "/reports/2024").allowed


def test_a_group_rule_applies_to_its_members(make_user, upstream):
    from django.contrib.auth.models import Group

    ops = Group.objects.create(name="ops")
    AccessRule.objects.create(upstream=upstream, group=ops, methods=["GET", "POST"], path_prefix="/")
    assert decide(make_user(groups=("ops",)), upstream, "POST", "/anything").allowed
    assert not decide(make_user(groups=("sales",)), upstream, "POST", "/anything").allowed


def test_disabled_rules_and_other_upstreams_rules_do_not_count(make_user, upstream):
    alice = make_user()
    other = Upstream.objects.create(name="hr", base_url="http://127.0.0.1:9")
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"], enabled=False)
    AccessRule.objects.create(upstream=other, user=alice, methods=["GET"])
    assert decide(alice, upstream, "GET", "/").reason == Reason.NO_MATCHING_RULE


def test_a_disabled_upstream_denies_everyone(make_user, upstream):
    alice = make_user()
    AccessRule.objects.create(upstream=upstream, user=alice, methods=["GET"])
    upstream.enabled = False
    assert decide(alice, upstream, "GET", "/").reason == Reason.UPSTREAM_DISABLED


def test_a_rule_must_have_exactly_one_subject(make_user, upstream):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        AccessRule.objects.create(upstream=upstream, methods=["GET"])
