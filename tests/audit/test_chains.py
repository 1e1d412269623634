"""The tree of requests an event belongs to: up to the user's request, then down, bounded and
safe from parent links that loop (apps/audit/chains.py; the endpoint is in tests/audit/api/test_views.py)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit import chains
from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

Shape = tuple[int, list[Any]]


def shape(node: chains.Node) -> Shape:
    """The tree as (id, [children...]) tuples, to compare with a literal."""
    return node.event.pk, [shape(child) for child in node.children]


def tree_of(event: AuditEvent, events=None, **limits) -> chains.Chain:
    return chains.tree(events if events is not None else AuditEvent.objects.all(), event, **limits)


@pytest.fixture
def call(make_event):
    """``call(parent, path)``: the event of a request made while serving ``parent`` (None: a user's request)."""

    def make(parent: AuditEvent | None = None, path: str = "/", **fields) -> AuditEvent:
        return make_event(parent_event_id=parent.pk if parent else None, path=path,
                          trace_id="4bf92f3577b34da6a3ce929d0e0e4736", **fields)  # fmt: skip

    return make


@pytest.fixture
def three_levels(call) -> dict[str, AuditEvent]:
    """A user's request; its upstream called a and b; a's callee called a1 and a2, b's called b1."""
    user = call(path="/orders")
    a, b = call(user, "/a"), call(user, "/b")
    made = {"user": user, "a": a, "b": b, "a1": call(a, "/a1"), "b1": call(b, "/b1"), "a2": call(a, "/a2")}
    call(path="/another-users-request")  # another tree, never part of this one
    return made


def expected_three_levels(e: dict[str, AuditEvent]) -> Shape:
    return (e["user"].pk, [
        (e["a"].pk, [(e["a1"].pk, []), (e["a2"].pk, [])]),
        (e["b"].pk, [(e["b1"].pk, [])]),
    ])  # fmt: skip


def test_a_request_with_two_sibling_calls_is_a_tree_of_two_levels(call):
    user = call()
    first, second = call(user), call(user)
    chain = tree_of(second)
    assert shape(chain.root) == (user.pk, [(first.pk, []), (second.pk, [])])
    assert (chain.requested, chain.count, chain.truncated, chain.looped) == (second.pk, 3, False, False)


@pytest.mark.parametrize("requested", ["user", "a", "a2", "b1"])
def test_the_whole_tree_of_three_levels_from_any_of_its_events(three_levels, requested):
    chain = tree_of(three_levels[requested])
    assert shape(chain.root) == expected_three_levels(three_levels)
    assert (chain.requested, chain.count, chain.truncated, chain.looped) == (three_levels[requested].pk, 6, 0, 0)


def test_a_request_that_called_nothing_is_a_tree_of_one(call):
    alone = call()
    assert shape(tree_of(alone).root) == (alone.pk, [])


def test_the_walk_reads_one_query_a_level(three_levels, django_assert_max_num_queries):
    leaf = three_levels["a2"]
    # Two parents up; three levels down (the last finds nothing).
    with django_assert_max_num_queries(2 + 3):
        tree_of(leaf)


def test_too_many_events_are_cut_and_said_to_be(call):
    user = call()
    calls = [call(user) for _ in range(5)]
    chain = tree_of(calls[1], max_nodes=3)
    assert shape(chain.root) == (user.pk, [(calls[0].pk, []), (calls[1].pk, [])])
    assert (chain.count, chain.truncated) == (3, True)


def test_the_requested_event_is_kept_when_the_tree_is_cut_before_it(call):
    user = call()
    calls = [call(user) for _ in range(5)]
    chain = tree_of(calls[-1], max_nodes=3)
    assert shape(chain.root) == (user.pk, [(calls[0].pk, []), (calls[-1].pk, [])])
    assert chain.truncated


def test_a_tree_exactly_at_the_limit_is_not_truncated(call):
    user = call()
    calls = [call(user) for _ in range(2)]
    chain = tree_of(user, max_nodes=3)
    assert (chain.count, chain.truncated) == (3, False)
    assert shape(chain.root) == (user.pk, [(calls[0].pk, []), (calls[1].pk, [])])


@pytest.fixture
def deep(call) -> list[AuditEvent]:
    """Six requests, each made while serving the one before."""
    made = [call()]
    for _ in range(5):
        made.append(call(made[-1]))
    return made


def test_a_tree_deeper_than_the_limit_is_cut_below(deep):
    chain = tree_of(deep[0], max_depth=2)
    assert shape(chain.root) == (deep[0].pk, [(deep[1].pk, [(deep[2].pk, [])])])
    assert chain.truncated


def test_a_chain_longer_than_the_limit_is_cut_above(deep):
    chain = tree_of(deep[5], max_depth=2)
    assert shape(chain.root) == (deep[3].pk, [(deep[4].pk, [(deep[5].pk, [])])])
    assert (chain.truncated, chain.root.event.parent_event_id) == (True, deep[2].pk)


def test_a_tree_exactly_as_deep_as_the_limit_is_not_truncated(deep):
    chain = tree_of(deep[2], max_depth=5)
    assert (chain.root.event.pk, chain.count, chain.truncated) == (deep[0].pk, 6, False)


def test_parents_that_loop_are_not_followed_and_the_loop_is_said(make_event):
    """Only a forged or corrupted row can name a later event as its parent."""
    first = make_event(parent_event_id=None)
    a = make_event(id=first.pk + 10, parent_event_id=first.pk + 12)
    b = make_event(id=first.pk + 11, parent_event_id=a.pk)
    c = make_event(id=first.pk + 12, parent_event_id=b.pk)
    sibling = make_event(parent_event_id=b.pk)
    for requested in (a, b, c, sibling):
        chain = tree_of(requested)
        assert chain.looped and not chain.truncated
        assert chain.count == 4  # each once
        assert requested.pk in {n for n in _ids(chain.root)}
    assert shape(tree_of(a).root) == (b.pk, [(c.pk, [(a.pk, [])]), (sibling.pk, [])])


def test_an_event_that_is_its_own_parent_is_a_tree_of_one_that_loops(make_event):
    first = make_event()
    itself = make_event(id=first.pk + 5, parent_event_id=first.pk + 5)
    chain = tree_of(itself)
    assert (shape(chain.root), chain.looped, chain.truncated) == ((itself.pk, []), True, False)


def test_a_loop_beyond_the_depth_limit_ends_too(make_event):
    first = make_event()
    ring = [make_event(id=first.pk + 10 + i, parent_event_id=first.pk + 10 + (i + 1) % 40) for i in range(40)]
    chain = tree_of(ring[0], max_depth=16)
    assert chain.truncated and chain.count <= 2 * 16 + 1


def test_a_parent_that_is_gone_makes_its_child_the_root(make_event):
    orphan = make_event(parent_event_id=10**12)  # purged by retention, say
    chain = tree_of(orphan)
    assert (shape(chain.root), chain.looped, chain.truncated) == ((orphan.pk, []), False, False)


def test_events_the_caller_may_not_see_are_left_out_with_what_hangs_below(three_levels):
    visible = AuditEvent.objects.exclude(pk=three_levels["a"].pk)
    chain = tree_of(three_levels["b1"], visible)
    assert shape(chain.root) == (three_levels["user"].pk, [(three_levels["b"].pk, [(three_levels["b1"].pk, [])])])
    hidden_parent = tree_of(three_levels["a1"], AuditEvent.objects.exclude(pk=three_levels["a"].pk))
    assert shape(hidden_parent.root) == (three_levels["a1"].pk, [])


def _ids(node: chains.Node) -> list[int]:
    return [node.event.pk, *(pk for child in node.children for pk in _ids(child))]
