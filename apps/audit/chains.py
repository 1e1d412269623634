"""The causal chain of gateway attempts: from any event, the tree of requests it belongs to.

A service behind the gate that calls the gate while it serves a request makes an event whose
``parent_event_id`` names the event of that request (signed by the gate, ``apps.gateway.tracing``):
a user's request E0, the call its upstream made (E1, parent E0), the call E1's upstream made (E2,
parent E1), and their siblings.  ``tree()`` walks up the parent links from one event to the
request that started it all (the root), then down from the root, breadth-first, one query per
level through the ``audit_parent`` index.

Bounded, whatever the rows say: the gateway allows only ``GATEWAY_MAX_HOPS`` nested calls, but
the walk trusts no row.  At most ``MAX_DEPTH`` links up and ``MAX_DEPTH`` levels down, at most
``MAX_NODES`` events, and ``truncated`` says when any were left out (the requested event and the
path to it never are).  A parent link back into the tree is not followed and ``looped`` says so:
only a forged or corrupted row has one, since a request's attempt is committed before its
upstream is called, so before anything can name it (``audit_verify`` tells whether a sealed row
was changed).  The walk reads through the caller's queryset only: an event the caller may not
see is left out with everything under it, and a root whose ``parent_event_id`` is set names a
parent that was purged or is not the caller's to see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import QuerySet

from apps.audit.models import AuditEvent

MAX_DEPTH = 16
MAX_NODES = 1000
# What a node shows of its event (``apps.audit.api.serializers.AuditEventSummarySerializer``).
SUMMARY_FIELDS = (
    "id", "occurred_at", "request_id", "actor_username", "token_key_id", "upstream_name", "method", "path",
    "decision", "reason", "status", "error", "duration_ms", "trace_id", "parent_event_id",
)  # fmt: skip


@dataclass
class Node:
    event: AuditEvent
    children: list[Node] = field(default_factory=list)


@dataclass
class Chain:
    requested: int
    root: Node
    truncated: bool
    looped: bool
    count: int


def tree(events: QuerySet[AuditEvent], start: AuditEvent, *, max_depth: int = MAX_DEPTH,
         max_nodes: int = MAX_NODES) -> Chain:  # fmt: skip
    """The tree ``start`` belongs to, read from ``events`` (the events the caller may see)."""
    events = events.only(*SUMMARY_FIELDS)
    path, cut_above = _ancestors(events, start, max_depth)
    walk = _Walk(events, path, max_nodes=max(max_nodes, len(path)))
    for _ in range(max_depth):
        if not walk.next_level():
            break
    else:
        walk.note_what_lies_below()
    root = walk.nodes[path[-1].pk]
    for node in walk.nodes.values():
        node.children.sort(key=lambda child: child.event.pk)
    return Chain(
        requested=start.pk,
        root=root,
        truncated=cut_above or walk.truncated,
        looped=root.event.parent_event_id in walk.nodes,
        count=len(walk.nodes),
    )


def _ancestors(events: QuerySet[AuditEvent], start: AuditEvent, max_depth: int) -> tuple[list[AuditEvent], bool]:
    """``start`` and its ancestors, nearest first, and whether the depth limit cut the walk."""
    path, seen = [start], {start.pk}
    while (parent_id := path[-1].parent_event_id) is not None and parent_id not in seen:
        if len(path) > max_depth:
            return path, True
        parent = events.filter(pk=parent_id).first()
        if parent is None:  # purged, or not the caller's to see
            break
        path.append(parent)
        seen.add(parent.pk)
    return path, False


class _Walk:
    """Breadth-first from the root (the last of ``path``), one query a level.  The events of
    ``path`` are always kept: they count against ``max_nodes`` from the start."""

    def __init__(self, events: QuerySet[AuditEvent], path: list[AuditEvent], *, max_nodes: int):
        root = path[-1]
        self.events = events
        self.nodes = {root.pk: Node(root)}
        self.level = [root.pk]
        self.on_path = list(reversed(path[:-1]))  # the path below the root, one event a level
        self.budget = max_nodes - len(path)
        self.truncated = False

    def next_level(self) -> bool:
        """Add the children of the current level; False when it has none."""
        keep = self.on_path.pop(0) if self.on_path else None
        # In (parent, id) order, the index's own: a range read of it, no sort, whatever the ids.
        found = list(self._children_of(self.level).order_by("parent_event_id", "id")[: self.budget + 2])
        added = []
        for event in found:
            if keep is not None and event.pk == keep.pk:
                keep = None
            elif self.budget > 0:
                self.budget -= 1
            else:
                self.truncated = True
                continue
            added.append(self._attach(event))
        if keep is not None:  # beyond the rows read: the query was cut, so others were too
            added.append(self._attach(keep))
            self.truncated = True
        self.level = added
        return bool(added)

    def note_what_lies_below(self) -> None:
        """The depth limit is reached: truncated if the last level has children."""
        self.truncated = self.truncated or self._children_of(self.level).exists()

    def _children_of(self, parents: Iterable[int]) -> QuerySet[AuditEvent]:
        # Every event but the root is found once, under its one parent; the root can only be
        # found again through a loop back to it (``Chain.looped``).
        root = next(iter(self.nodes))
        return self.events.filter(parent_event_id__in=list(parents)).exclude(pk=root)

    def _attach(self, event: AuditEvent) -> int:
        node = Node(event)
        self.nodes[event.pk] = node
        assert event.parent_event_id is not None  # found as a child
        self.nodes[event.parent_event_id].children.append(node)
        return event.pk
