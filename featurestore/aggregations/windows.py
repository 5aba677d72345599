"""Windows, slides and tiles: the time arithmetic both paths share.

A window of length ``W`` with slide ``S`` gives, at time ``t``, the events with
``floor(t - W, S) <= event_ts < t`` (``floor`` to a multiple of ``S`` since the UTC epoch).
Its *body* ``[a, b)`` with ``b = floor(t, S)`` and ``a = b - W`` is a whole number of
slides; its *head* ``[b, t)`` is the part of the slide that holds ``t``.

Tiles are aligned to the epoch at a few *levels*: the slide, then 1 hour and 1 day when
they are multiples of the level below and no longer than the window (``chain``). A view
keeps tiles at the union of its windows' levels (``view_levels``). The body is cut into
the fewest aligned tiles (``decompose``): slide tiles up to the next hour, hour tiles up to
the next day, whole days, then hours and slides again, so a 7-day window with 1-hour slides
is at most 23 + 7 + 23 pieces, plus the head. ``decompose`` is one function of integers
(microseconds), written once for Python ints (online, one ``now``) and numpy arrays
(offline, one ``t`` per entity row): both paths cut every window identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
HIERARCHY = (HOUR, DAY)  # the levels above a slide, when they fit

_DEFAULT_CANDIDATES = (DAY, HOUR, 5 * MINUTE, MINUTE, SECOND)
_UNITS = (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", SECOND), ("ms", 1000), ("us", 1))


def microseconds(delta: timedelta) -> int:
    """A timedelta as whole microseconds (exact)."""
    return delta // timedelta(microseconds=1)


def base_slide(window_us: int) -> int:
    """The slide Chronon would choose for a window: 5 minutes under 12 hours, 1 hour under
    12 days, 1 day beyond."""
    if window_us < 12 * HOUR:
        return 5 * MINUTE
    if window_us < 12 * DAY:
        return HOUR
    return DAY


def default_slide(window_us: int) -> int | None:
    """The largest of 1 d, 1 h, 5 min, 1 min, 1 s that divides the window and is no larger
    than ``base_slide``; None when none does (the window is not whole seconds)."""
    limit = base_slide(window_us)
    for candidate in _DEFAULT_CANDIDATES:
        if candidate <= limit and window_us % candidate == 0:
            return candidate
    return None


def format_window(window_us: int) -> str:
    """A window in its largest whole unit: ``5m``, ``1h``, ``1d`` (24 hours is ``1d``),
    ``90m``, ``1500ms``."""
    for unit, size in _UNITS:
        if window_us % size == 0:
            return f"{window_us // size}{unit}"
    raise AssertionError("every whole number of microseconds has a unit")


def chain(window_us: int, slide_us: int) -> tuple[int, ...]:
    """A window's tile levels, finest first: its slide, then 1 h and 1 d when each is a
    multiple of the level below and no longer than the window."""
    levels = [slide_us]
    for level in HIERARCHY:
        if level > levels[-1] and level % levels[-1] == 0 and level <= window_us:
            levels.append(level)
    return tuple(levels)


def view_levels(windows: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """The tile levels a view keeps: the union of its (window, slide) chains, ascending."""
    return tuple(sorted({level for w, s in windows for level in chain(w, s)}))


class Ops:
    """The integer operations ``decompose`` needs, for Python ints."""

    @staticmethod
    def minimum(a: Any, b: Any) -> Any:
        return a if a <= b else b

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:
        return a if a >= b else b


class NumpyOps:
    """The same operations on numpy arrays (elementwise)."""

    @staticmethod
    def minimum(a: Any, b: Any) -> Any:
        import numpy as np

        return np.minimum(a, b)

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:
        import numpy as np

        return np.maximum(a, b)


Range = tuple[int, Any, Any]  # (level, start, end): the level's tiles starting in [start, end)


def decompose(t: Any, window_us: int, slide_us: int, ops: Any = Ops) -> tuple[list[Range], Any]:
    """Cut the window at ``t`` into ranges of aligned tiles, in time order, and the head.

    Returns ``(ranges, b)``: every tile of level ``L`` starting in ``[start, end)`` of each
    range ``(L, start, end)``, in order, then the head ``[b, t)`` (part of the slide tile
    starting at ``b``), together cover ``[floor(t - W, S), t)`` exactly once. ``t`` is µs
    since the epoch: a Python int, or a numpy int64 array with ``ops=NumpyOps`` (then the
    range bounds are arrays, one per ``t``).
    """
    levels = chain(window_us, slide_us)
    b = t // slide_us * slide_us
    lo, hi = b - window_us, b
    left: list[Range] = []
    right: list[Range] = []
    for i, level in enumerate(levels):
        if i + 1 < len(levels):
            up = levels[i + 1]
            inner_lo = ops.minimum(-(-lo // up) * up, hi)
            inner_hi = ops.maximum(hi // up * up, inner_lo)
            left.append((level, lo, inner_lo))
            right.append((level, inner_hi, hi))
            lo, hi = inner_lo, inner_hi
        else:
            left.append((level, lo, hi))
    return left + right[::-1], b
