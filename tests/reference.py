"""The brute-force reference of the point-in-time rules: the executable specification.

Plain Python over plain rows, written to be obviously right rather than fast. Engines are
tested against it on random data (tests/strategies.py). DESIGN.md "Semantics":

- candidates for an entity row (keys ``k``, time ``t``) in a view with ttl ``d``: source rows
  with keys ``k`` (typed: ``1 != "1"``, int widths equal), a non-null key and event time,
  and ``t - d <= event_ts <= t`` (no lower bound when ``d`` is None or zero); with
  ``as_of="created"`` also ``created_ts <= t`` (a missing created time counts as known);
- winner: greatest ``(event_ts, created_ts, file index, row index)``, a missing created
  time sorting oldest; no candidate (or a null entity key or time) gives nulls;
- asked ``with_timestamps``, the winner's event and created times as ``view__event_ts``
  and ``view__created_ts`` (aware UTC; null without a winner or a created time).

Pushes (DESIGN.md "Push sources"): a push is one more file, read after every file of the
source and after earlier pushes (``RefView.pushes``); its rows without a created time get the
push time when the source has a created column (``push``).

Request-time transformations (``RefOnDemand``): per entity row, the function sees that row's
inputs only (the features it reads, as the join gives them, and the row's request fields)
and its outputs are cast to their dtypes: Float32 rounds to the nearest float32, and with
``nan_is_null`` (pandas mode: nullable dtypes hold no NaN) a NaN input or output is null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

OLDEST = datetime.min


@dataclass
class SourceRow:
    """One source row: key values, event and created time (None = missing), feature values."""

    keys: dict[str, Any]
    event_ts: datetime | None
    created_ts: datetime | None
    values: dict[str, Any]


@dataclass
class RefView:
    """A feature view as the reference sees it: rows per Parquet file, in file order."""

    name: str
    join_keys: list[str]
    ttl: timedelta | None
    features: list[str]
    files: list[list[SourceRow]] = field(default_factory=list)
    has_created: bool = True
    pushes: list[list[SourceRow]] = field(default_factory=list)

    @property
    def ttl_bound(self) -> timedelta | None:
        return None if not self.ttl else self.ttl

    @property
    def all_files(self) -> list[list[SourceRow]]:
        """The source's files, then the pushed ones, in push order: the tie-break order."""
        return [*self.files, *self.pushes]


def push(view: RefView, rows: Sequence[SourceRow], pushed_at: datetime) -> None:
    """Record a push: its rows (a row without a created time gets ``pushed_at`` when the
    source has a created column) become the view's next pushed file."""
    view.pushes.append(
        [
            SourceRow(
                dict(r.keys),
                r.event_ts,
                r.created_ts if r.created_ts is not None or not view.has_created else pushed_at,
                dict(r.values),
            )
            for r in rows
        ]
    )


@dataclass
class RefOnDemand:
    """A request-time view as the reference sees it: a plain-Python row function over
    ``{input name: value}`` (features by name, request fields by name) returning
    ``{output: value}``, and each output's dtype name."""

    name: str
    inputs: list[tuple[str, str]]  # (view, feature)
    request: list[str]
    row_function: Callable[[dict[str, Any]], dict[str, Any]]
    dtypes: dict[str, str]
    nan_is_null: bool = True

    def outputs(
        self, features: Mapping[tuple[str, str], Any], request: Mapping[str, Any]
    ) -> dict[str, Any]:
        """One row's outputs from its inputs' values."""
        row = {f: self._input(features[(v, f)]) for v, f in self.inputs}
        row |= {name: self._input(request.get(name)) for name in self.request}
        return {
            name: self._cast(value, self.dtypes[name])
            for name, value in self.row_function(row).items()
        }

    def _input(self, value: Any) -> Any:
        if self.nan_is_null and isinstance(value, float) and math.isnan(value):
            return None
        return value

    def _cast(self, value: Any, dtype: str) -> Any:
        import numpy as np

        value = self._input(value)
        if value is None or dtype != "Float32":
            return value
        with np.errstate(over="ignore"):
            return float(np.float32(value))  # the nearest float32 (infinity past the largest)


def _utc_naive(ts: datetime) -> datetime:
    return ts.replace(tzinfo=None) if ts.tzinfo is None else ts.astimezone(UTC).replace(tzinfo=None)


def _rank(row: SourceRow, file_index: int, row_index: int) -> tuple[datetime, datetime, int, int]:
    created = OLDEST if row.created_ts is None else _utc_naive(row.created_ts)
    assert row.event_ts is not None
    return (_utc_naive(row.event_ts), created, file_index, row_index)


def _usable(row: SourceRow, keys: Sequence[str]) -> bool:
    return row.event_ts is not None and all(row.keys.get(k) is not None for k in keys)


def _same_key(a: Any, b: Any) -> bool:
    # Typed equality: bool is not an int key, 1 != "1".
    return type(a) is type(b) and a == b


def winner(
    view: RefView, keys: Mapping[str, Any], t: datetime | None, as_of: str
) -> SourceRow | None:
    """The row an entity with ``keys`` at ``t`` gets from ``view``, or None."""
    if t is None or any(keys.get(k) is None for k in view.join_keys):
        return None
    t = _utc_naive(t)
    best: tuple[tuple[datetime, datetime, int, int], SourceRow] | None = None
    for file_index, rows in enumerate(view.all_files):
        for row_index, row in enumerate(rows):
            if not _usable(row, view.join_keys):
                continue
            if not all(_same_key(row.keys[k], keys[k]) for k in view.join_keys):
                continue
            rank = _rank(row, file_index, row_index)
            event = rank[0]
            if event > t:
                continue
            if view.ttl_bound is not None and event < t - view.ttl_bound:
                continue
            if as_of == "created" and row.created_ts is not None and rank[1] > t:
                continue
            if best is None or rank > best[0]:
                best = (rank, row)
    return None if best is None else best[1]


def point_in_time(
    entity_rows: Sequence[Mapping[str, Any]],
    views: Sequence[RefView],
    *,
    as_of: str = "event",
    full_feature_names: bool = False,
    with_timestamps: bool = False,
    timestamp_column: str = "event_timestamp",
    on_demand: Sequence[RefOnDemand] = (),
    all_views: Sequence[RefView] = (),
) -> list[dict[str, Any]]:
    """Every entity row (all its columns, in order, duplicates kept) plus each feature
    (and, ``with_timestamps``, each view's winner's event and created times), then each
    on-demand view's outputs (their inputs joined from ``all_views``, request fields from
    the entity row's columns)."""

    def utc(ts: datetime | None) -> datetime | None:
        return None if ts is None else _utc_naive(ts).replace(tzinfo=UTC)

    out = []
    for entity in entity_rows:
        row = dict(entity)
        for view in views:
            won = winner(view, entity, entity.get(timestamp_column), as_of)
            for feature in view.features:
                name = f"{view.name}__{feature}" if full_feature_names else feature
                row[name] = None if won is None else won.values.get(feature)
            if with_timestamps:
                row[f"{view.name}__event_ts"] = None if won is None else utc(won.event_ts)
                row[f"{view.name}__created_ts"] = None if won is None else utc(won.created_ts)
        by_name = {v.name: v for v in [*all_views, *views]}
        for odfv in on_demand:
            inputs = {}
            for view_name, feature in odfv.inputs:
                won = winner(by_name[view_name], entity, entity.get(timestamp_column), as_of)
                inputs[(view_name, feature)] = None if won is None else won.values.get(feature)
            for name, value in odfv.outputs(inputs, entity).items():
                row[f"{odfv.name}__{name}" if full_feature_names else name] = value
        out.append(row)
    return out


def latest(
    view: RefView,
    *,
    end: datetime,
    start: datetime | None = None,
    created_after: datetime | None = None,
) -> dict[tuple[Any, ...], SourceRow]:
    """Materialization's read: per key, the winner among rows with ``event_ts <= end`` and
    (``event_ts >= start`` or ``created_ts > created_after``)."""
    end = _utc_naive(end)
    best: dict[tuple[Any, ...], tuple[tuple[datetime, datetime, int, int], SourceRow]] = {}
    for file_index, rows in enumerate(view.all_files):
        for row_index, row in enumerate(rows):
            if not _usable(row, view.join_keys):
                continue
            rank = _rank(row, file_index, row_index)
            in_window = rank[0] <= end and (start is None or rank[0] >= _utc_naive(start))
            late = (
                rank[0] <= end
                and created_after is not None
                and row.created_ts is not None
                and rank[1] > _utc_naive(created_after)
            )
            if not (in_window or late):
                continue
            key = tuple(row.keys[k] for k in view.join_keys)
            if key not in best or rank > best[key][0]:
                best[key] = (rank, row)
    return {k: row for k, (_, row) in best.items()}


def same_value(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (a NaN stored in a source is a value, not a null)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b if a is not None and b is not None else a is b


# --- windowed aggregations ----------------------------------------------------------------


def window_events(
    view: RefView,
    keys: Mapping[str, Any],
    t: datetime,
    window: timedelta,
    slide: timedelta,
    as_of: str = "event",
) -> list[tuple[tuple[datetime, datetime, int, int], SourceRow]]:
    """The key's events an aggregation at ``t`` sees, in the join's order: non-null key and
    event time, ``floor(t - window, slide) <= event_ts < t`` (``floor`` to a multiple of
    ``slide`` since the epoch), and with ``as_of="created"`` ``created_ts <= t`` (a missing
    created time counts as known)."""
    t = _utc_naive(t)
    epoch = datetime(1970, 1, 1)
    start = epoch + ((t - window) - epoch) // slide * slide
    found = []
    for file_index, rows in enumerate(view.files):
        for row_index, row in enumerate(rows):
            if not _usable(row, view.join_keys):
                continue
            if not all(_same_key(row.keys[k], keys[k]) for k in view.join_keys):
                continue
            rank = _rank(row, file_index, row_index)
            if not start <= rank[0] < t:
                continue
            if as_of == "created" and row.created_ts is not None and rank[1] > t:
                continue
            found.append((rank, row))
    return sorted(found, key=lambda pair: pair[0])


class SumOutOfRange(ArithmeticError):
    """An integer sum whose exact total does not fit in Int64: the aggregation is an error."""


def aggregate(function: str, values: list[Any], events: int) -> Any:
    """One aggregation over the window's values (in the join's order; None = null) and its
    number of events, by the definition in featurestore/aggregations/__init__.py. An
    integer sum is exact (Python ints): ``SumOutOfRange`` iff its total is outside Int64,
    whatever its partial sums did."""
    present = [v for v in values if v is not None]
    if function == "count":
        return events
    if function == "sum":
        total = sum(present)
        if isinstance(total, int) and not -(2**63) <= total < 2**63:
            raise SumOutOfRange(total)
        return total
    if not present:
        return None
    if function == "last":
        return present[-1]
    if function in ("min", "max"):
        nans = [v for v in present if isinstance(v, float) and math.isnan(v)]
        numbers = [v for v in present if not (isinstance(v, float) and math.isnan(v))]
        if function == "max":
            return nans[0] if nans else max(numbers)
        return min(numbers) if numbers else nans[0]
    floats = [float(v) for v in present]
    if any(math.isnan(v) for v in floats) or (
        any(v == math.inf for v in floats) and any(v == -math.inf for v in floats)
    ):
        mean = math.nan
    elif any(math.isinf(v) for v in floats):
        mean = next(v for v in floats if math.isinf(v))
    else:
        mean = math.fsum(floats) / len(floats)
    if function == "mean":
        return mean
    if len(floats) < 2:
        return None
    if not all(math.isfinite(v) for v in floats):
        return math.nan
    variance = math.fsum((v - mean) * (v - mean) for v in floats) / (len(floats) - 1)
    return math.sqrt(variance) if function == "stddev" else variance
