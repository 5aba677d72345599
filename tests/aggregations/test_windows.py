"""Windows and tiles: default slides and names, the levels, and the cut both paths make."""

from __future__ import annotations

import itertools
from datetime import timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.aggregations.windows import (
    DAY,
    HOUR,
    MINUTE,
    SECOND,
    NumpyOps,
    chain,
    decompose,
    default_slide,
    format_window,
)


def test_default_slides_follow_chronon_and_divide_the_window() -> None:
    assert default_slide(HOUR) == 5 * MINUTE
    assert default_slide(7 * MINUTE) == MINUTE  # 5 min does not divide 7 min
    assert default_slide(90 * SECOND) == SECOND
    assert default_slide(24 * HOUR) == HOUR
    assert default_slide(13 * HOUR) == HOUR
    assert default_slide(7 * DAY) == HOUR
    assert default_slide(30 * DAY) == DAY
    assert default_slide(36 * DAY + HOUR) == HOUR
    assert default_slide(1500) is None  # 1.5 ms: no whole second divides it


def test_windows_are_named_in_their_largest_whole_unit() -> None:
    assert [format_window(w) for w in (5 * MINUTE, HOUR, 24 * HOUR, 90 * MINUTE, 1500)] == [
        "5m",
        "1h",
        "1d",
        "90m",
        "1500us",
    ]


def test_levels_go_up_from_the_slide_through_hours_and_days() -> None:
    assert chain(7 * DAY, HOUR) == (HOUR, DAY)
    assert chain(HOUR, 5 * MINUTE) == (5 * MINUTE, HOUR)
    assert chain(90 * MINUTE, 5 * MINUTE) == (5 * MINUTE, HOUR)
    assert chain(2 * DAY, 7 * MINUTE) == (7 * MINUTE,)  # 7 min divides neither an hour nor a day
    assert chain(10 * MINUTE, MINUTE) == (MINUTE,)


WINDOWS = st.sampled_from(
    [
        (HOUR, 5 * MINUTE),
        (DAY, HOUR),
        (7 * DAY, HOUR),
        (2 * DAY, 6 * HOUR),
        (10 * MINUTE, MINUTE),
        (3 * DAY, 8 * MINUTE),
    ]
)


@settings(max_examples=300, deadline=None)
@given(t=st.integers(-(10**14), 10**14), window=WINDOWS)
def test_the_pieces_cover_the_window_exactly_once_in_time_order(
    t: int, window: tuple[int, int]
) -> None:
    w, s = window
    ranges, b = decompose(t, w, s)
    covered = []
    for level, start, end in ranges:
        assert start % level == 0 and end % level == 0, (level, start, end)
        covered += [(x, x + level) for x in range(start, end, level)]
    covered.append((b, t))
    expected_start = (t - w) // s * s
    assert covered[0][0] == expected_start and covered[-1][1] == t
    assert all(a[1] == b_[0] for a, b_ in itertools.pairwise(covered))
    # a 7-day window with 1-hour slides: at most 23 + 7 + 23 tiles, never 168
    if (w, s) == (7 * DAY, HOUR):
        assert len(covered) - 1 <= 53
    # the numpy cut is the same, element for element
    arrays, b_array = decompose(np.array([t]), w, s, NumpyOps)
    assert int(b_array[0]) == b
    for (level, start, end), (level2, start2, end2) in zip(ranges, arrays, strict=True):
        assert (level, start, end) == (level2, int(start2[0]), int(end2[0]))


def test_timedelta_windows_need_no_float() -> None:
    assert timedelta(days=7) // timedelta(microseconds=1) == 7 * DAY
