"""An aggregated view's part of a training set, from what an engine read: the engine-neutral
glue between an engine's two results (entity rows with key codes; events sorted by key code
and the join's order) and ``featurestore.aggregations.offline``.

Both engines call ``aggregate_join``: the DuckDB engine with its sorted events, BigQuery's
with the same events read by its own SQL, so the numbers are computed by one piece of code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from featurestore.errors import RetrievalError

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.offline.plan import JoinPlan, ViewJoin

ROW = "__fs_row"
CODE = "__fs_code"
T = "__fs_t"
TS = "__fs_ts"
CREATED = "__fs_created"


def aggregate_join(plan: JoinPlan, view: ViewJoin, rows: pa.Table, events: pa.Table) -> pa.Table:
    """The view's output columns (``plan.view_outputs``), one row per entity row in the
    caller's order.

    ``rows``: ``__fs_row`` (the entity row's position), ``__fs_code`` (-1 for a null key)
    and ``__fs_t`` (µs, null for a null time), in any order. ``events``: ``__fs_code``,
    ``__fs_ts`` and ``__fs_created`` (µs; a missing created time as the smallest int64) and
    the aggregated columns, sorted by (code, the join's order key).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from featurestore.aggregations.offline import (
        AggregationOverflow,
        Events,
        Rows,
        aggregate,
    )

    assert view.aggregations is not None
    n = rows.num_rows
    position = rows[ROW].to_numpy()
    code = np.full(n, -1, dtype=np.int64)
    code[position] = rows[CODE].to_numpy()
    t_column = rows[T]
    t = np.zeros(n, dtype=np.int64)
    t[position] = pc.fill_null(t_column, 0).to_numpy()
    null = np.zeros(n, dtype=bool)
    null[position] = t_column.is_null().to_numpy(zero_copy_only=False)
    has_created = view.source.created_column is not None
    found = Events(
        code=events[CODE].to_numpy(),
        ts=events[TS].to_numpy(),
        created=events[CREATED].to_numpy() if has_created else None,
        columns={name: events[name] for name, _ in view.aggregated_columns},
    )
    try:
        values = aggregate(
            view.aggregations,
            [f.name for f in view.features],
            found,
            Rows(code, t, null),
            plan.as_of,
        )
    except AggregationOverflow as exc:
        raise RetrievalError(
            f"feature view {view.name!r}: a sum of Int64 column {exc.column!r} overflows Int64 "
            "for some entity row; aggregate a Float64 column instead"
        ) from None
    columns = {f.output: values[f.name] for f in view.features}
    if plan.with_timestamps:
        utc = pa.timestamp("us", tz="UTC")
        for name in view.timestamp_columns:
            columns[name] = pa.nulls(n, utc)
    return pa.table(columns)


def number_keys(
    key_names: list[str], entities: pa.Table, events: pa.Table
) -> tuple[pa.Table, pa.Table]:
    """Key codes for an engine that returns events sorted by their keys (not by a code):
    ``entities`` (``__fs_row``, the keys, ``__fs_t`` as a timestamp) and ``events`` (the
    keys first, sorted by them) get ``__fs_code``; the events' codes follow their order, an
    entity key without events gets a code of its own, a null key -1."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = events.num_rows
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
        for name in key_names:
            column = events[name].combine_chunks()
            different = pc.not_equal(column.slice(1), column.slice(0, n - 1))
            change[1:] |= pc.fill_null(different, True).to_numpy(zero_copy_only=False)
    code = np.cumsum(change) - 1
    known = (
        events.select(key_names)
        .filter(pa.array(change))
        .append_column(CODE, pa.array(np.arange(int(change.sum()), dtype=np.int64)))
    )
    joined = entities.join(known, key_names, join_type="left outer")
    codes = joined[CODE].to_numpy(zero_copy_only=False)
    codes = np.where(np.isnan(codes.astype(float)), -1, codes).astype(np.int64)
    has_key = np.ones(joined.num_rows, dtype=bool)
    for name in key_names:
        has_key &= ~joined[name].is_null().to_numpy(zero_copy_only=False)
    missing = (codes < 0) & has_key
    codes[missing] = int(change.sum()) + np.arange(int(missing.sum()))  # no events: empty
    t = pc.cast(pc.cast(joined[T], pa.timestamp("us", tz="UTC")), pa.int64())
    rows = pa.table({ROW: joined[ROW], CODE: pa.array(codes), T: t})
    return rows, events.append_column(CODE, pa.array(code, pa.int64()))
