"""The cursor's compact id ranges (apps.siem.ranges)."""

from apps.siem import ranges


def test_ids_added_merge_into_touching_ranges():
    assert ranges.add([], [5, 3, 4, 9]) == [[3, 5], [9, 9]]
    assert ranges.add([[3, 5], [9, 9]], [6, 7, 8]) == [[3, 9]]
    assert ranges.add([[10, 20]], [1]) == [[1, 1], [10, 20]]


def test_a_range_added_swallows_the_ranges_it_overlaps():
    assert ranges.add_range([[1, 2], [5, 6], [9, 12]], 3, 9) == [[1, 12]]


def test_the_low_water_moves_over_the_range_right_after_it_only():
    assert ranges.advance(10, [[11, 15], [17, 20]]) == (15, [[17, 20]])
    assert ranges.advance(10, [[12, 15]]) == (10, [[12, 15]])
    assert ranges.advance(10, [[3, 8], [11, 11]]) == (11, [])


def test_missing_lists_the_holes_between_ranges():
    assert list(ranges.missing([[3, 4], [7, 8]], 1, 10)) == [(1, 2), (5, 6), (9, 10)]
    assert list(ranges.missing([[1, 10]], 2, 5)) == []
    assert list(ranges.missing([], 4, 3)) == []


def test_contains_below_and_above():
    rs = [[3, 5], [9, 12]]
    assert [s for s in range(14) if ranges.contains(rs, s)] == [3, 4, 5, 9, 10, 11, 12]
    assert ranges.below(rs, 10) == [[3, 5], [9, 10]]
    assert ranges.above(rs, 4) == [[5, 5], [9, 12]]
    assert list(ranges.ids([[1, 2], [5, 5]])) == [1, 2, 5]
