"""Sets of ids as compact, sorted lists of inclusive ``[lo, hi]`` ranges (JSON-friendly).

A sink's cursor keeps the ids it finished above its low water this way: events go out as they
complete, so a few long-open attempts leave holes, and a million ids sent after them are still
one range.  Ranges are kept disjoint and never touching (``[1, 3], [4, 5]`` is ``[1, 5]``)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

Ranges = list[list[int]]


def add(ranges: Ranges, ids: Iterable[int]) -> Ranges:
    """``ranges`` with ``ids`` added (a new list; the input is left alone)."""
    merged = [list(r) for r in ranges]
    for lo, hi in _runs(sorted(set(ids))):
        merged = add_range(merged, lo, hi)
    return merged


def add_range(ranges: Ranges, lo: int, hi: int) -> Ranges:
    """``ranges`` with ``lo..hi`` added, merged with every range it overlaps or touches."""
    kept: Ranges = []
    for r_lo, r_hi in ranges:
        if r_hi < lo - 1 or r_lo > hi + 1:
            kept.append([r_lo, r_hi])
        else:
            lo, hi = min(lo, r_lo), max(hi, r_hi)
    bisect.insort(kept, [lo, hi])
    return kept


def contains(ranges: Ranges, seq: int) -> bool:
    i = bisect.bisect_right(ranges, [seq, float("inf")]) - 1
    return i >= 0 and ranges[i][0] <= seq <= ranges[i][1]


def advance(low_water: int, ranges: Ranges) -> tuple[int, Ranges]:
    """Move the low water over the range that starts right after it, and drop what it passed."""
    kept = [list(r) for r in ranges if r[1] > low_water]
    if kept and kept[0][0] <= low_water + 1:
        low_water = kept.pop(0)[1]
    return low_water, kept


def missing(ranges: Ranges, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """The runs of ``lo..hi`` (inclusive) that no range holds, in order."""
    at = lo
    for r_lo, r_hi in ranges:
        if r_hi < at:
            continue
        if r_lo > hi:
            break
        if r_lo > at:
            yield at, r_lo - 1
        at = r_hi + 1
    if at <= hi:
        yield at, hi


def below(ranges: Ranges, limit: int) -> Ranges:
    """The part of ``ranges`` at or below ``limit``."""
    return [[lo, min(hi, limit)] for lo, hi in ranges if lo <= limit]


def above(ranges: Ranges, limit: int) -> Ranges:
    """The part of ``ranges`` above ``limit``."""
    return [[max(lo, limit + 1), hi] for lo, hi in ranges if hi > limit]


def ids(ranges: Ranges) -> Iterator[int]:
    for lo, hi in ranges:
        yield from range(lo, hi + 1)


def _runs(sorted_ids: list[int]) -> Iterator[tuple[int, int]]:
    start = previous = None
    for seq in sorted_ids:
        if previous is not None and seq == previous + 1:
            previous = seq
            continue
        if start is not None and previous is not None:
            yield start, previous
        start = previous = seq
    if start is not None and previous is not None:
        yield start, previous
