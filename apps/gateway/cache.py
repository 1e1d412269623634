"""A tiny per-process cache whose entries live at most a fixed number of seconds.

Used for what every gateway request reads (upstreams, rules, group membership):
a change made anywhere is seen by every daemon process within ``ttl`` seconds,
which is the documented bound (``settings.POLICY_CACHE_SECONDS``).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

_instances: weakref.WeakSet[TTLCache] = weakref.WeakSet()


def clear_all() -> None:
    """Forget every cached entry of this process (tests; never needed for correctness)."""
    for cache in list(_instances):
        cache.clear()


class TTLCache(Generic[V]):
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 10_000):
        self.ttl = ttl
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        _instances.add(self)

    def get_or_load(self, key: Hashable, load: Callable[[], V]) -> V:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.ttl:
                return entry[1]
        value = load()  # Outside the lock: a slow query must not stall other threads.
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
