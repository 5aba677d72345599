"""The one merge, on both backends: Python scalars (online reads) and numpy arrays (offline,
materialization) give the same bits, on values from 1e-300 to 1e300, infinities, NaN and
-0.0; tiles are balanced pairwise merges whose shape depends only on their length; an Int64
sum is exact on both, in any order, and an error only when a window's total leaves Int64."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.aggregations.partials import (
    NUMPY,
    PYTHON,
    Layout,
    SumOverflow,
    finalize,
    fold,
    merge,
)
from featurestore.aggregations.tiles import event_partials, reduce_segments
from featurestore.types import Float64, Int64
from tests.strategies import NEAR_INT64_LIMITS

FUNCTIONS = ("count", "sum", "mean", "stddev", "variance", "min", "max", "last")
FLOAT_LAYOUT = Layout.of([("x", Float64, f) for f in FUNCTIONS])
INT_LAYOUT = Layout.of([("k", Int64, f) for f in ("sum", "mean", "min", "max")])
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, -1e300, 1e308, -1e308, 1e-300, -1e-300, -0.0, 0.0, math.nan, 0.1, 3.0]),
    st.none(),
)


def same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a).item(), np.asarray(b).item()
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    return a == b


def tree(layout: Layout, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The pairwise tree ``reduce_segments`` promises, in plain Python."""
    while len(parts) > 1:
        parts = [
            merge(layout, parts[i], parts[i + 1], PYTHON) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(VALUES, min_size=1, max_size=40), cuts=st.lists(st.integers(1, 39), max_size=6)
)
def test_numpy_tiles_and_python_folds_agree_bit_for_bit(values: list[Any], cuts: list[int]) -> None:
    events = event_partials(FLOAT_LAYOUT, {"x": pa.array(values, pa.float64())})
    starts = np.array(sorted({0, *[c for c in cuts if c < len(values)]}), dtype=np.int64)
    tiles = reduce_segments(FLOAT_LAYOUT, events, starts)
    ends = [*starts[1:].tolist(), len(values)]
    as_python = [{k: v[i].item() for k, v in events.items()} for i in range(len(values))]
    python_tiles = [
        tree(FLOAT_LAYOUT, as_python[s:e]) for s, e in zip(starts.tolist(), ends, strict=True)
    ]
    for i, tile in enumerate(python_tiles):
        for name, value in tile.items():
            assert same_bits(value, tiles[name][i]), (name, i, value, tiles[name][i])
    # a window: the left fold of the tiles, then finalized, on both backends
    window_py = fold(FLOAT_LAYOUT, python_tiles, PYTHON)
    as_arrays = [{k: np.asarray([v]) for k, v in t.items()} for t in python_tiles]
    column = FLOAT_LAYOUT.columns[0]
    with np.errstate(all="ignore"):
        window_np = fold(FLOAT_LAYOUT, as_arrays, NUMPY)
        for function in FUNCTIONS[1:]:
            py_value, py_null = finalize(column, function, window_py, PYTHON)
            np_value, np_null = finalize(column, function, window_np, NUMPY)
            assert bool(np.asarray(np_null).item()) == bool(py_null), function
            if not py_null:
                assert same_bits(py_value, np_value), (function, py_value, np_value)


def test_sum_of_negative_zeros_stays_negative_and_nulls_are_skipped() -> None:
    events = event_partials(FLOAT_LAYOUT, {"x": pa.array([None, -0.0, None, -0.0], pa.float64())})
    tile = reduce_segments(FLOAT_LAYOUT, events, np.array([0]))
    column = FLOAT_LAYOUT.columns[0]
    value, null = finalize(column, "sum", {k: v[0].item() for k, v in tile.items()}, PYTHON)
    assert not null and math.copysign(1.0, value) == -1.0
    assert tile["count"][0] == 4 and tile[column.field("n")][0] == 2


def test_mean_and_variance_with_infinities_and_nan_follow_sql() -> None:
    column = FLOAT_LAYOUT.columns[0]

    def window(values: list[float]) -> dict[str, Any]:
        events = event_partials(FLOAT_LAYOUT, {"x": pa.array(values, pa.float64())})
        parts = [{k: v[i].item() for k, v in events.items()} for i in range(len(values))]
        state = fold(FLOAT_LAYOUT, parts, PYTHON)
        assert state is not None
        return state

    assert finalize(column, "mean", window([1.0, math.inf, 2.0]), PYTHON)[0] == math.inf
    assert math.isnan(finalize(column, "mean", window([1.0, math.inf, -math.inf]), PYTHON)[0])
    assert math.isnan(finalize(column, "variance", window([1.0, math.inf, 2.0]), PYTHON)[0])
    assert finalize(column, "variance", window([1e300, 1e300 + 1e284]), PYTHON)[0] > 0
    assert finalize(column, "max", window([1.0, math.nan]), PYTHON)[0] != 1.0  # NaN is greatest
    assert finalize(column, "min", window([math.nan, 1.0]), PYTHON)[0] == 1.0
    # Welford/Chan: large offsets do not cancel the variance away (sums of squares would)
    assert finalize(column, "variance", window([1e9 + 1, 1e9 + 2, 1e9 + 3]), PYTHON)[0] == 1.0


def test_a_mean_of_finite_values_whose_difference_overflows_stays_finite() -> None:
    """Defect: Chan's update ``ma + (mb - ma) * w`` overflowed on 1e308 and -1e308 and gave
    -inf; the mean of finite values lies between them (the reference: fsum / n), here within
    the rounding of values of that size."""
    column = FLOAT_LAYOUT.columns[0]
    big = 1.7976931348623157e308
    for values, mean in [
        ([1e308, -1e308], 0.0),
        ([big, -big, 3.0], 1.0),
        ([-big, big, big, -big], 0.0),
        ([big, big], big),
    ]:
        events = event_partials(FLOAT_LAYOUT, {"x": pa.array(values, pa.float64())})
        parts = [{k: v[i].item() for k, v in events.items()} for i in range(len(values))]
        online = fold(FLOAT_LAYOUT, parts, PYTHON)  # a read's left fold
        offline = reduce_segments(FLOAT_LAYOUT, events, np.array([0]))  # a tile's tree
        assert online is not None
        tile = {k: v[0].item() for k, v in offline.items()}
        for state in (online, tile):
            got = finalize(column, "mean", state, PYTHON)[0]
            assert math.isfinite(got) and abs(got - mean) <= 1e-15 * big, (values, got)


def int_partials(layout: Layout, values: list[int | None]) -> list[dict[str, Any]]:
    """Each value of column ``k`` as a partial of Python scalars."""
    events = event_partials(layout, {"k": pa.array(values, pa.int64())})
    return [{k: v[i].item() for k, v in events.items()} for i in range(len(values))]


def as_arrays(partial: dict[str, Any]) -> dict[str, Any]:
    return {k: np.asarray([v]) for k, v in partial.items()}


def window_of(values: list[int], backend: Any) -> dict[str, Any]:
    """The left fold of ``values``' partials (``INT_LAYOUT``) on ``backend``."""
    parts = int_partials(INT_LAYOUT, values)
    state = fold(INT_LAYOUT, parts if backend is PYTHON else [as_arrays(p) for p in parts], backend)
    assert state is not None
    return dict(state)


@pytest.mark.parametrize("backend", [PYTHON, NUMPY])
def test_an_int64_sum_is_judged_on_the_window_total_not_on_its_partial_sums(
    backend: Any,
) -> None:
    """Defect: every merge raised ``SumOverflow`` when its partial sum left Int64, so
    ``[2**63 - 1, 1, -1]`` was an error though its total fits (DuckDB's own SUM, a hugeint,
    gives 2**63 - 1), and day tiles that no sum reads failed materialization. Now the merge
    is exact and never fails; ``finalize`` fails when the window's total leaves Int64."""
    import duckdb

    column = INT_LAYOUT.columns[0]
    with np.errstate(all="ignore"):
        for values in ([2**63 - 1, 1, -1], [-(2**63), -1, 1], [2**62, 2**62, -(2**62), 5]):
            state = window_of(values, backend)
            value, null = finalize(column, "sum", state, backend)
            assert np.asarray(value).item() == sum(values) and not np.asarray(null).any()
            sql = f"SELECT sum(v) FROM (VALUES {', '.join(f'({v})' for v in values)}) t(v)"
            assert duckdb.connect().execute(sql).fetchone() == (sum(values),)
            for function in ("mean", "min", "max"):  # the other fields are unaffected
                finalize(column, function, state, backend)
        for values in ([2**63 - 1, 1], [-(2**63), -1], [2**62, 2**62]):
            state = window_of(values, backend)  # merging is no error...
            with pytest.raises(SumOverflow) as raised:  # ... the window's sum is
                finalize(column, "sum", state, backend)
            assert raised.value.column == "k"
            assert finalize(column, "max", state, backend)[0] == max(values)


INT64_VALUES = st.one_of(
    st.sampled_from(NEAR_INT64_LIMITS),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-3, 3),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(INT64_VALUES, min_size=1, max_size=40),
    cuts=st.lists(st.integers(1, 39), max_size=6),
    data=st.data(),
)
def test_an_int64_sum_is_exact_in_every_order_and_on_both_backends(
    values: list[int | None], cuts: list[int], data: st.DataObject
) -> None:
    """Values near both limits (carries up and down): numpy tiles and Python trees give the
    same bits, any order of the same values gives the same partial, and ``finalize`` gives
    the exact total, or ``SumOverflow`` iff that total is outside Int64 (Python ints are
    exact), on both backends."""
    layout = Layout.of([("k", Int64, "sum"), ("k", Int64, "max")])
    events = event_partials(layout, {"k": pa.array(values, pa.int64())})
    starts = np.array(sorted({0, *[c for c in cuts if c < len(values)]}), dtype=np.int64)
    with np.errstate(all="ignore"):
        tiles = reduce_segments(layout, events, starts)
    ends = [*starts[1:].tolist(), len(values)]
    parts = int_partials(layout, values)
    python_tiles = [tree(layout, parts[s:e]) for s, e in zip(starts.tolist(), ends, strict=True)]
    for i, tile in enumerate(python_tiles):
        assert tile == {name: tiles[name][i].item() for name in tile}, i
    window = fold(layout, python_tiles, PYTHON)
    shuffled = data.draw(st.permutations(parts))
    assert fold(layout, shuffled, PYTHON) == window  # the total's one representation
    with np.errstate(all="ignore"):
        window_np = fold(layout, [as_arrays(t) for t in python_tiles], NUMPY)
    assert window is not None and window_np is not None
    assert window == {name: np.asarray(v).item() for name, v in window_np.items()}
    total = sum(v for v in values if v is not None)
    column = layout.columns[0]
    for backend, state in ((PYTHON, window), (NUMPY, window_np)):
        if -(2**63) <= total < 2**63:
            assert np.asarray(finalize(column, "sum", state, backend)[0]).item() == total
        else:
            with pytest.raises(SumOverflow):
                finalize(column, "sum", state, backend)


def _python_partial(values: list[Any]) -> dict[str, Any]:
    events = event_partials(FLOAT_LAYOUT, {"x": pa.array(values, pa.float64())})
    return tree(
        FLOAT_LAYOUT, [{k: v[i].item() for k, v in events.items()} for i in range(len(values))]
    )


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.lists(VALUES, min_size=1, max_size=6), st.lists(VALUES, min_size=1, max_size=6)
        ),
        min_size=1,
        max_size=20,
    )
)
def test_one_numpy_merge_of_many_pairs_equals_each_pair_merged_alone(
    pairs: list[tuple[list[Any], list[Any]]],
) -> None:
    """Rows where a side is empty (only nulls), NaN, infinities or values 600 orders of
    magnitude apart, side by side in one array merge: each row as the scalar merge."""
    a = [_python_partial(left) for left, _ in pairs]
    b = [_python_partial(right) for _, right in pairs]
    as_arrays = [
        {k: np.asarray([p[k] for p in side]) for k in side[0] if not k.startswith("last")}
        for side in (a, b)
    ]
    layout = Layout.of([("x", Float64, f) for f in FUNCTIONS if f != "last"])
    with np.errstate(all="ignore"):
        merged = merge(layout, as_arrays[0], as_arrays[1], NUMPY)
    for i, (left, right) in enumerate(zip(a, b, strict=True)):
        expected = merge(layout, left, right, PYTHON)
        for name, value in expected.items():
            assert same_bits(value, merged[name][i]), (name, i, value, merged[name][i])


@pytest.mark.parametrize("yes_kind", ["int", "float", "int scalar", "float scalar"])
@pytest.mark.parametrize("no_kind", ["int", "float", "int scalar", "float scalar"])
@pytest.mark.parametrize("condition", [[False] * 4, [True] * 4, [True, False, False, True]])
def test_numpy_where_is_np_where(yes_kind: str, no_kind: str, condition: list[bool]) -> None:
    """The numpy backend's ``where`` may hand back one side's array when the condition is
    all one way: always the values, dtype and shape ``np.where`` gives."""
    sides = {
        "int": np.array([1, -2, 3, 4], dtype=np.int64),
        "float": np.array([-0.0, math.nan, 1e-300, 1e300]),
        "int scalar": 7,
        "float scalar": 1.0,
    }
    got = NUMPY.where(np.array(condition), sides[yes_kind], sides[no_kind])
    expected = np.where(np.array(condition), sides[yes_kind], sides[no_kind])
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()
