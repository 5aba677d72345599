"""Partial aggregates and the one merge: what a tile, a head or a window holds, and how two
of them combine.

A *partial* of a view is a record of fields over some events of one entity key, in time
order: ``count`` (events), and per aggregated column ``n`` (non-null values) plus what its
functions need (``functions.FUNCTIONS``): ``sum`` (an integer column's with ``wraps``:
below); ``mean`` and ``m2`` (Welford/Chan: the mean and the sum of squared deviations,
numerically stable, never a sum of squares); ``min``; ``max``; ``last``. An event is a
partial of one event; a tile is the merge of its events (``tiles.reduce_segments``); a
window's value is the left fold of its pieces (``windows.decompose``), then ``finalize``.

``merge(layout, a, b, xp)`` is written once, over a tiny backend ``xp``: ``PYTHON`` (plain
floats and ints, for an online read's handful of tiles) or ``NUMPY`` (elementwise over
arrays, for offline and materialization). Every step is one IEEE-754 operation (+, -, *, /,
comparisons, sqrt), in the same order on both backends and without fused multiply-add, so
the two give the same bits; tests/aggregations/test_partials.py proves it on values from
1e-300 to 1e300, infinities, NaN and -0.0. ``a`` holds the earlier events, ``b`` the later
ones; a side with no value (``n == 0``) is skipped, never added (so ``-0.0`` stays ``-0.0``).

Semantics the merge encodes (the package docstring has the full table): ``sum`` is IEEE
addition for floats and exact for integers: an integer column's ``sum`` is its total wrapped
to int64 (two's complement) and ``wraps`` counts the wraps (+1 up, -1 down), so the exact
total is ``sum + wraps * 2**64``. That pair is the total's one representation, so every
order and tree of merges gives the same bits. A merge never fails: ``finalize`` raises
``SumOverflow`` when a window's total does not fit in Int64 (``wraps`` not 0), so a tile or
a partial sum out of range is no error when the window's total fits. ``mean`` is Chan's
update while both means are finite and IEEE addition of the means otherwise (so one
infinity gives it, both signs or a NaN give NaN, as SQL's AVG; when the means are finite
but their difference overflows, e.g. 1e308 and -1e308, it is the weighted sum of the two
means instead, which stays in range); ``m2`` is NaN as soon as a
mean is not finite (variance of data with NaN or infinities is NaN); ``min`` and ``max``
order NaN above every number and keep the earlier of two equal values; ``last`` is the
later side's.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from featurestore.aggregations.functions import FUNCTIONS
from featurestore.types import DType, Float64, Int64

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INTEGERS = ("Int32", "Int64")  # the integer column dtypes: their sums are exact
KINDS = ("n", "sum", "wraps", "mean", "m2", "min", "max", "last")
WRAP = 2**64  # what one wrap of an int64 sum stands for


class SumOverflow(ArithmeticError):
    """A window's integer sum does not fit in Int64 (the caller names the view and column)."""

    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.column = column


@dataclass(frozen=True)
class ColumnPartials:
    """The partial fields of one aggregated source column."""

    index: int
    name: str
    dtype: DType
    kinds: tuple[str, ...]  # a subset of KINDS, in KINDS order

    def __post_init__(self) -> None:
        # looked up on every merge: computed once
        object.__setattr__(self, "is_float", self.dtype.name in ("Float32", "Float64"))
        object.__setattr__(self, "is_integer", self.dtype.name in INTEGERS)
        object.__setattr__(self, "_fields", {kind: f"{kind}{self.index}" for kind in KINDS})

    is_float: bool = dataclass_field(init=False, repr=False, compare=False)
    is_integer: bool = dataclass_field(init=False, repr=False, compare=False)
    _fields: dict[str, str] = dataclass_field(init=False, repr=False, compare=False)

    def field(self, kind: str) -> str:
        return self._fields[kind]

    def field_dtype(self, kind: str) -> DType:
        """How a field is stored: counts Int64; sums Int64 (integer columns: wrapped, with
        their ``wraps`` count, Int64) or Float64; mean and m2 Float64; min and max Int64
        (integers, timestamps as µs) or Float64; ``last`` the column's own dtype."""
        if kind in ("n", "wraps"):
            return Int64
        if kind == "sum":
            return Int64 if self.is_integer else Float64
        if kind in ("mean", "m2"):
            return Float64
        if kind in ("min", "max"):
            return Float64 if self.is_float else Int64
        return self.dtype


@dataclass(frozen=True)
class Layout:
    """A view's partial record: ``count``, then each aggregated column's fields."""

    columns: tuple[ColumnPartials, ...]

    @classmethod
    def of(cls, aggregations: Sequence[tuple[str, DType, str]]) -> Layout:
        """From (column, column dtype, function) triples, columns in order of first use."""
        kinds: dict[str, set[str]] = {}
        dtypes: dict[str, DType] = {}
        for column, dtype, function in aggregations:
            wanted = set(FUNCTIONS[function].fields)
            if "sum" in wanted and dtype.name in INTEGERS:
                wanted.add("wraps")  # an integer sum is exact: wrapped, and its wraps counted
            kinds.setdefault(column, set()).update(wanted)
            dtypes[column] = dtype
        used = [(name, wanted) for name, wanted in kinds.items() if wanted]  # count needs none
        return cls(
            tuple(
                ColumnPartials(i, name, dtypes[name], tuple(k for k in KINDS if k in wanted))
                for i, (name, wanted) in enumerate(used)
            )
        )

    def column(self, name: str) -> ColumnPartials:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @functools.cached_property
    def fields(self) -> tuple[tuple[str, DType], ...]:
        """Every field with its stored dtype, in record order (``count`` first)."""
        out = [("count", Int64)]
        for column in self.columns:
            out += [(column.field(kind), column.field_dtype(kind)) for kind in column.kinds]
        return tuple(out)

    @functools.cached_property
    def field_names(self) -> tuple[str, ...]:
        """``fields``' names (an online read decodes every tile by them)."""
        return tuple(name for name, _ in self.fields)


# --- the two backends -------------------------------------------------------------------


class _Python:
    """Scalars: Python ints and floats (IEEE doubles)."""

    nan = math.nan

    @staticmethod
    def where(condition: Any, yes: Any, no: Any) -> Any:
        return yes if condition else no

    @staticmethod
    def both(a: Any, b: Any) -> Any:
        return a and b

    @staticmethod
    def either(a: Any, b: Any) -> Any:
        return a or b

    @staticmethod
    def negate(a: Any) -> Any:
        return not a

    isnan = staticmethod(math.isnan)
    isfinite = staticmethod(math.isfinite)
    all_finite = staticmethod(math.isfinite)

    sqrt = staticmethod(math.sqrt)

    @staticmethod
    def to_float(n: Any) -> Any:
        return float(n)

    @staticmethod
    def add_wrapping(a: Any, b: Any) -> tuple[Any, Any]:
        """``a + b`` wrapped to int64, and its carry: +1 or -1 when it wrapped, else 0."""
        total = a + b
        if total > INT64_MAX:
            return total - WRAP, 1
        if total < INT64_MIN:
            return total + WRAP, -1
        return total, 0

    @staticmethod
    def any_nonzero(x: Any) -> bool:
        return x != 0


class _Numpy:
    """Arrays: numpy, elementwise (int64 and float64)."""

    nan = math.nan

    @staticmethod
    def where(condition: Any, yes: Any, no: Any) -> Any:
        """``np.where``; when every element takes the same side and that side is already an
        array of the result's shape and dtype, that array itself (the same elements,
        without a pass over three arrays: most conditions of a merge are all-false, e.g.
        "a side has no value", or all-true)."""
        import numpy as np

        condition = np.asarray(condition)
        if condition.ndim:
            side = None if condition.any() else no
            if side is None and condition.all():
                side = yes
            if (
                isinstance(side, np.ndarray)
                and side.shape == condition.shape
                and side.dtype == np.result_type(yes, no)
            ):
                return side
        return np.where(condition, yes, no)

    @staticmethod
    def both(a: Any, b: Any) -> Any:
        return a & b

    @staticmethod
    def either(a: Any, b: Any) -> Any:
        return a | b

    @staticmethod
    def negate(a: Any) -> Any:
        return ~a

    @staticmethod
    def all_finite(x: Any) -> bool:
        import numpy as np

        return bool(np.isfinite(x).all())

    @staticmethod
    def isnan(x: Any) -> Any:
        import numpy as np

        return np.isnan(x)

    @staticmethod
    def isfinite(x: Any) -> Any:
        import numpy as np

        return np.isfinite(x)

    @staticmethod
    def sqrt(x: Any) -> Any:
        import numpy as np

        return np.sqrt(x)

    @staticmethod
    def to_float(n: Any) -> Any:
        import numpy as np

        return np.asarray(n).astype(np.float64)

    @staticmethod
    def add_wrapping(a: Any, b: Any) -> tuple[Any, Any]:
        """``a + b`` wrapped to int64 (numpy's own addition), and its carry: it wrapped iff
        ``a`` and ``b`` have one sign and the total the other (two addends of opposite
        signs never wrap), upwards (+1) when they are non-negative, downwards (-1) when
        negative; ``(a >> 63) | 1`` is that sign as -1 or +1."""
        import numpy as np

        total = np.add(a, b, dtype=np.int64)
        wrapped = ((a ^ total) & (b ^ total)) < 0
        return total, np.where(wrapped, (a >> 63) | 1, 0) if wrapped.any() else 0

    @staticmethod
    def any_nonzero(x: Any) -> bool:
        import numpy as np

        return bool(np.any(x != 0))


PYTHON = _Python()
NUMPY = _Numpy()

Partial = Mapping[str, Any]


def merge(layout: Layout, a: Partial, b: Partial, xp: Any) -> dict[str, Any]:
    """The partial of ``a``'s events followed by ``b``'s (see the module docstring)."""
    where, both_, negate = xp.where, xp.both, xp.negate
    out: dict[str, Any] = {"count": a["count"] + b["count"]}
    for column in layout.columns:
        kinds = column.kinds
        field = column._fields  # kind -> field name (a dict: looked up on every merge)
        n = field["n"]
        na, nb = a[n], b[n]
        out[n] = na + nb
        a_empty, b_empty = na == 0, nb == 0
        if "sum" in kinds:
            f = field["sum"]
            sa, sb = a[f], b[f]
            if column.is_integer:  # exact (module docstring); an empty side holds 0 and 0
                out[f], carry = xp.add_wrapping(sa, sb)
                g = field["wraps"]
                out[g] = a[g] + b[g] + carry
            else:
                out[f] = where(b_empty, sa, where(a_empty, sb, sa + sb))
        if "mean" in kinds:
            f = field["mean"]
            ma, mb = a[f], b[f]
            fa, fb = xp.to_float(na), xp.to_float(nb)
            both = fa + fb
            both = where(both == 0.0, 1.0, both)  # both sides empty: never divide by zero
            isfinite = xp.isfinite
            finite = both_(isfinite(ma), isfinite(mb))
            delta = mb - ma
            mean = ma + delta * (fb / both)
            if not xp.all_finite(delta):  # rare: a mean not finite, or an overflow
                overflowed = both_(finite, negate(isfinite(delta)))  # e.g. 1e308, -1e308
                # the weighted sum of the means instead: each term stays within range
                mean = where(overflowed, ma * (fa / both) + mb * (fb / both), mean)
            mean = where(finite, mean, ma + mb)
            out[f] = where(b_empty, ma, where(a_empty, mb, mean))
            if "m2" in kinds:
                g = field["m2"]
                m2 = where(finite, a[g] + b[g] + delta * delta * (fa * fb / both), xp.nan)
                out[g] = where(b_empty, a[g], where(a_empty, b[g], m2))
        for kind in ("min", "max"):
            if kind in kinds:
                f = field[kind]
                va, vb = a[f], b[f]
                if kind == "min":
                    take_b = vb < va
                    if column.is_float:  # NaN sorts above every number
                        take_b = xp.either(take_b, both_(xp.isnan(va), negate(xp.isnan(vb))))
                else:
                    take_b = vb > va
                    if column.is_float:
                        take_b = xp.either(take_b, both_(xp.isnan(vb), negate(xp.isnan(va))))
                out[f] = where(b_empty, va, where(a_empty, vb, where(take_b, vb, va)))
        if "last" in kinds:
            f = field["last"]
            out[f] = where(b_empty, a[f], b[f])
    return out


def fold(layout: Layout, pieces: Sequence[Partial], xp: Any = PYTHON) -> Partial | None:
    """The left fold of ``pieces`` (in time order) with ``merge``; None when there are none."""
    if not pieces:
        return None
    state = pieces[0]
    for piece in pieces[1:]:
        state = merge(layout, state, piece, xp)
    return state


def empty(layout: Layout) -> dict[str, Any]:
    """The partial of no event (a window with nothing in it), as Python scalars."""
    out: dict[str, Any] = {"count": 0}
    for column in layout.columns:
        for kind in column.kinds:
            zero: Any = 0 if column.field_dtype(kind).name in ("Int64", "Int32") else 0.0
            out[column.field(kind)] = None if kind == "last" else zero
    return out


def finalize(column: ColumnPartials, function: str, state: Partial, xp: Any) -> tuple[Any, Any]:
    """An aggregation's value from a window's partial: ``(value, is_null)``.

    count: events; sum: 0 when no value, and ``SumOverflow`` when an integer column's total
    does not fit in Int64 (on the numpy backend: any row's); mean: null when no value;
    variance and stddev: sample statistics (n - 1), null under two values; min, max, last:
    null when no value.
    """
    if function == "count":
        return state["count"], False
    n = state[column.field("n")]
    if function == "sum":
        total = state[column.field("sum")]
        if column.is_integer:  # the total is sum + wraps * 2**64: it fits iff no wrap is left
            if xp.any_nonzero(state[column.field("wraps")]):
                raise SumOverflow(column.name)
            return total, False  # no value: 0 already
        return xp.where(n == 0, 0.0, total), False
    if function in ("variance", "stddev"):
        below = n < 2
        denominator = xp.to_float(n) - 1.0
        denominator = xp.where(below, 1.0, denominator)
        variance = state[column.field("m2")] / denominator
        value = xp.sqrt(variance) if function == "stddev" else variance
        return value, below
    kind = "mean" if function == "mean" else function
    return state[column.field(kind)], n == 0
