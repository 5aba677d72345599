"""The point-in-time join and materialization's read, planned: views, keys, sources, windows
and output columns.

A ``JoinPlan`` (the training-set join) and a ``LatestPlan`` (the latest row per key, for
materialization) are engine-neutral: every offline engine (``offline/engine.py``) runs
them, DuckDB's as DuckDB SQL and BigQuery's as BigQuery SQL, so both answer the same
question. Everything a request can get wrong (a missing key or timestamp column, a key of
the wrong type, two outputs landing in one column) is checked here, before any data is read.

The question, for every entity row with keys ``k`` and time ``t`` and every view with ttl
``d``: among the view's source rows with keys ``k`` and ``t - d <= event_ts <= t`` (no lower
bound without a ttl; with ``as_of="created"`` also ``created_ts <= t``), the one with the
greatest ``(event_ts, created_ts, file, row)`` wins (a missing created time sorts oldest);
no candidate gives nulls. With ``with_timestamps`` the winner's event and created times are
output too (``columns.timestamp_columns``), null where there is no winner.

Features of on-demand views are not joined: the plan joins their inputs (under reserved
``__fs_input__`` columns when not asked for) and lists the ``Transformation`` steps that
``training.historical_job`` runs on the joined table (featurestore/transforms.py); their
outputs come after the joined features. Their request fields must be entity columns.

An aggregated view (``ViewJoin.aggregations``) answers another question for the same row:
each aggregation over the key's events with ``floor(t - window, slide) <= event_ts < t``
(with ``as_of="created"`` only those created by ``t``), featurestore/aggregations/. Its
``with_timestamps`` columns are null (no row wins).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from featurestore.columns import (
    CREATED_TS,
    ENTITY_TIMESTAMP,
    EVENT_TS,
    check_unique,
    feature_column,
    timestamp_columns,
)
from featurestore.definitions import (
    RESERVED_PREFIX,
    BigQuerySource,
    FeatureView,
    FeatureViewProjection,
    FileSource,
)
from featurestore.errors import RetrievalError
from featurestore.sources import parquet_files
from featurestore.transforms import Transformation, hidden_column, split_request
from featurestore.types import DType, coercible, dtype_from_arrow, is_timestamp

if TYPE_CHECKING:
    from datetime import datetime

    import pyarrow as pa

    from featurestore.aggregations.plan import ViewAggregations
    from featurestore.registry_state import RegistryState

AsOf = Literal["event", "created"]


@dataclass(frozen=True)
class KeyColumn:
    """A join key and the dtype the view declares for it."""

    name: str
    dtype: DType


@dataclass(frozen=True)
class FeatureColumn:
    """A requested feature: its source column, declared dtype and output column name (a
    reserved ``__fs_input__`` name for a transformation's input that was not asked for)."""

    name: str
    dtype: DType
    output: str

    @property
    def hidden(self) -> bool:
        return self.output.startswith(RESERVED_PREFIX)


@dataclass(frozen=True)
class FileSourcePlan:
    """Parquet files, in tie-break order (a later file wins a complete tie)."""

    paths: tuple[str, ...]
    timestamp_column: str
    created_column: str | None


@dataclass(frozen=True)
class BigQuerySourcePlan:
    """A BigQuery table or query (exactly one is set)."""

    table: str | None
    query: str | None
    timestamp_column: str
    created_column: str | None


SourcePlan = FileSourcePlan | BigQuerySourcePlan


@dataclass(frozen=True)
class ViewJoin:
    """One requested view: how to read it, match it and which features it contributes.

    ``all_features`` lists every feature of the view in schema order: an engine whose
    tables have no row order (BigQuery) breaks complete ties by their values.
    """

    name: str
    keys: tuple[KeyColumn, ...]
    source: SourcePlan
    ttl_us: int | None
    features: tuple[FeatureColumn, ...]
    all_features: tuple[tuple[str, DType], ...]
    fingerprint: str
    aggregations: ViewAggregations | None = None  # set for an aggregated view

    @property
    def aggregated_columns(self) -> tuple[tuple[str, DType], ...]:
        """An aggregated view's source columns the requested aggregations read, with their
        dtypes (all of the view's columns: tiles hold every aggregation's partials)."""
        if self.aggregations is None:
            return ()
        return tuple((c.name, c.dtype) for c in self.aggregations.layout.columns)

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)

    @property
    def timestamp_columns(self) -> tuple[str, str]:
        """Where the winner's event and created times go (``with_timestamps``)."""
        return timestamp_columns(self.name)


@dataclass(frozen=True)
class JoinPlan:
    """The whole request: views in ``transforms.split_request``'s order (of first
    reference) and the entity table's columns.

    Output: every entity column in the caller's order, then every view's feature
    columns in that order, then the transformations' outputs.
    """

    views: tuple[ViewJoin, ...]
    entity_columns: tuple[str, ...]
    as_of: AsOf
    full_feature_names: bool
    with_timestamps: bool = False
    timestamp_column: str = ENTITY_TIMESTAMP
    transformations: tuple[Transformation, ...] = ()

    @property
    def feature_columns(self) -> tuple[FeatureColumn, ...]:
        """Every feature of the answer: joined ones, then transformations' outputs."""
        joined = tuple(f for v in self.views for f in v.features if not f.hidden)
        computed = tuple(
            FeatureColumn(o.name, o.dtype, o.output)
            for t in self.transformations
            for o in t.outputs
        )
        return joined + computed

    def requested_features(self) -> tuple[tuple[str, str, FeatureColumn], ...]:
        """``(view, projection fingerprint, column)`` for every feature of the answer."""
        joined = tuple(
            (v.name, v.fingerprint, f) for v in self.views for f in v.features if not f.hidden
        )
        computed = tuple(
            (t.view, t.fingerprint, FeatureColumn(o.name, o.dtype, o.output))
            for t in self.transformations
            for o in t.outputs
        )
        return joined + computed

    def view_outputs(self, view: ViewJoin) -> tuple[str, ...]:
        """A view's output columns: its features, then (``with_timestamps``) its winner's
        event and created times."""
        features = tuple(f.output for f in view.features if not f.hidden)
        return features + (view.timestamp_columns if self.with_timestamps else ())

    @property
    def output_columns(self) -> tuple[str, ...]:
        """The answer's columns (``RetrievalJob.to_arrow``), in order."""
        joined = tuple(c for v in self.views for c in self.view_outputs(v))
        computed = tuple(o.output for t in self.transformations for o in t.outputs)
        return self.entity_columns + joined + computed

    @property
    def hidden_columns(self) -> tuple[str, ...]:
        """The joined inputs of transformations that were not asked for (dropped)."""
        return tuple(f.output for v in self.views for f in v.features if f.hidden)

    def output_schema(self) -> pa.Schema:
        """The columns the engine's join adds to the entity table, with their Arrow types
        (hidden transformation inputs included; not the transformations' outputs)."""
        import pyarrow as pa

        utc = pa.timestamp("us", tz="UTC")
        fields = []
        for view in self.views:
            fields += [(f.output, f.dtype.to_arrow()) for f in view.features]
            if self.with_timestamps:
                fields += [(name, utc) for name in view.timestamp_columns]
        return pa.schema(fields)

    @property
    def key_dtypes(self) -> dict[str, DType]:
        """Every join key of the request with its dtype (shared keys agree: ``build_join_plan``
        checks them with ``RegistryState.shared_key_dtypes``)."""
        return {k.name: k.dtype for v in self.views for k in v.keys}


def _source_plan(source: FileSource | BigQuerySource, repo: Path) -> SourcePlan:
    if isinstance(source, FileSource):
        return FileSourcePlan(
            paths=tuple(str(p) for p in parquet_files(source, repo)),
            timestamp_column=source.timestamp_field,
            created_column=source.created_timestamp_column,
        )
    return BigQuerySourcePlan(
        table=source.table,
        query=source.query,
        timestamp_column=source.timestamp_field,
        created_column=source.created_timestamp_column,
    )


def plan_view(
    view: FeatureView,
    key_dtypes: Mapping[str, DType],
    features: Sequence[str],
    *,
    full_feature_names: bool,
    repo_path: Path,
    fingerprint: str = "",
    hidden: Sequence[str] = (),
) -> ViewJoin:
    """Plan one view's part of a join (or of a latest-per-key read) for ``features``, and
    ``hidden``: transformation inputs not asked for, output under reserved names."""
    from featurestore.aggregations.plan import ViewAggregations

    by_name = {f.name: f for f in view.features}
    return ViewJoin(
        name=view.name,
        keys=tuple(KeyColumn(k, key_dtypes[k]) for k in view.join_keys),
        source=_source_plan(view.batch_source, repo_path),
        ttl_us=view.ttl_microseconds,
        features=tuple(
            FeatureColumn(
                name=name,
                dtype=by_name[name].dtype,
                output=feature_column(view.name, name, full_feature_names),
            )
            for name in features
        )
        + tuple(
            FeatureColumn(
                name=name, dtype=by_name[name].dtype, output=hidden_column(view.name, name)
            )
            for name in hidden
        ),
        all_features=tuple((f.name, f.dtype) for f in view.features),
        fingerprint=fingerprint,
        aggregations=ViewAggregations.of(view) if view.is_aggregated else None,
    )


@dataclass(frozen=True)
class LatestPlan:
    """Materialization's read of one view: per entity key, the latest candidate row.

    Candidates: non-null keys and event time, ``event_ts <= end``, and ``event_ts >= start``
    (no bound when ``start`` is None) or ``created_ts > created_after`` (a late row). The
    winner per key is the join's: the greatest (event_ts, created_ts with NULL oldest,
    then the engine's last tie-break). ``view`` holds every feature of the view.
    """

    view: ViewJoin
    end: datetime
    start: datetime | None = None
    created_after: datetime | None = None

    def output_schema(self) -> pa.Schema:
        """The rows read: join keys, every feature (declared Arrow types), the event and
        created times as timestamp[us, UTC] under the online write's reserved names
        (``columns.EVENT_TS``, ``columns.CREATED_TS``; created is null when the source has none)."""
        import pyarrow as pa

        utc = pa.timestamp("us", tz="UTC")
        return pa.schema(
            [(k.name, k.dtype.to_arrow()) for k in self.view.keys]
            + [(f.name, f.dtype.to_arrow()) for f in self.view.features]
            + [(EVENT_TS, utc), (CREATED_TS, utc)]
        )


@dataclass(frozen=True)
class TileEventsPlan:
    """Materialization's read of an aggregated view: for each entity key with a candidate
    event (``event_ts < end`` and ``event_ts >= start`` or ``created_ts > created_after``),
    its events from ``lower`` on, ``lower`` being the earliest start (µs), at any level, of
    a tile holding its first candidate, but no earlier than that level's ``bounds`` entry
    (the oldest tile start still kept); events before ``end`` only. Sorted by (join keys,
    the join's order key); columns: the join keys, ``__fs_ts``, ``__fs_created`` (µs, the
    smallest int64 when missing), ``__fs_lower`` (µs) and the aggregated columns."""

    view: ViewJoin
    end: datetime
    start: datetime | None
    created_after: datetime | None
    bounds: tuple[tuple[int, int], ...]  # per level: (level µs, oldest tile start kept µs)


def plan_latest(
    view: FeatureView,
    key_dtypes: Mapping[str, DType],
    *,
    repo_path: Path,
    end: datetime,
    start: datetime | None = None,
    created_after: datetime | None = None,
) -> LatestPlan:
    """Plan materialization's read of ``view``'s latest rows (see ``LatestPlan``)."""
    planned = plan_view(
        view, key_dtypes, view.feature_names, full_feature_names=False, repo_path=repo_path
    )
    return LatestPlan(planned, end, start, created_after)


def request_key_dtypes(
    state: RegistryState, projections: Sequence[FeatureViewProjection]
) -> dict[str, DType]:
    """Every join key the projected views need, with the dtype an entity column of it holds
    (entity files are read with these types, so a CSV key ``001`` of a String key stays a
    string); views declaring one key as a String and as an integer are a RetrievalError
    (``RegistryState.shared_key_dtypes``)."""
    return state.shared_key_dtypes(state.projection_view_names(projections))


def _check_timestamp_column(entity_schema: pa.Schema, views: Sequence[ViewJoin]) -> None:
    import pyarrow.types as pt

    if ENTITY_TIMESTAMP not in entity_schema.names:
        times = [f.name for f in entity_schema if is_timestamp(f.type)]
        # Feast takes a lone timestamp column of another name as the rows' time; here the
        # time is always named, so another time column (a label's) is never taken for it.
        rename = (
            f"; rename {times[0]!r} to {ENTITY_TIMESTAMP!r} if it holds the rows' times (Feast "
            "would take the only timestamp column; featurestore reads only that name)"
            if len(times) == 1
            else ""
        )
        raise RetrievalError(
            f"entity_df has no {ENTITY_TIMESTAMP!r} column, which views "
            f"{', '.join(v.name for v in views)} need for the point-in-time join; "
            f"it has {list(entity_schema.names)}{rename}"
        )
    arrow_type = entity_schema.field(ENTITY_TIMESTAMP).type
    if not (is_timestamp(arrow_type) or pt.is_string(arrow_type) or pt.is_null(arrow_type)):
        raise RetrievalError(
            f"entity_df column {ENTITY_TIMESTAMP!r} has type {arrow_type}; "
            "give timestamps (or ISO-8601 strings)"
        )


def _check_key(view: ViewJoin, key: KeyColumn, entity_schema: pa.Schema) -> None:
    import pyarrow.types as pt

    if key.name not in entity_schema.names:
        raise RetrievalError(
            f"entity_df has no column {key.name!r}, the join key feature view {view.name!r} "
            f"needs; it has {list(entity_schema.names)}"
        )
    arrow_type = entity_schema.field(key.name).type
    if pt.is_null(arrow_type):
        return  # all-null column: no row matches, whatever the type
    given = dtype_from_arrow(arrow_type)
    integers = {"Int32", "Int64"}
    same = given is not None and (
        given.name == key.dtype.name or {given.name, key.dtype.name} <= integers
    )
    if not same:
        hint = (
            " (pandas turns an integer column with missing values into float64: use the "
            "nullable dtype 'Int64')"
            if given is not None and given.name.startswith("Float") and key.dtype.name in integers
            else ""
        )
        raise RetrievalError(
            f"feature view {view.name!r}: join key {key.name!r} is {key.dtype} but entity_df "
            f"holds {arrow_type}; convert the column (keys 1 and '1' are different keys){hint}"
        )


def build_join_plan(
    state: RegistryState,
    projections: Sequence[FeatureViewProjection],
    entity_schema: pa.Schema,
    full_feature_names: bool,
    as_of: AsOf,
    repo_path: Path,
    with_timestamps: bool = False,
) -> JoinPlan:
    """Plan the point-in-time join of ``projections`` onto an entity table of ``entity_schema``.

    Views, keys and dtypes come from the applied registry ``state``. Raises RetrievalError
    naming the culprit when the entity table lacks a column a view needs, holds a key of
    the wrong type, or when two output columns would share a name
    (``columns.check_unique``).
    """
    if as_of not in ("event", "created"):
        raise RetrievalError(f"as_of must be 'event' or 'created', got {as_of!r}")
    reserved = [c for c in entity_schema.names if c.startswith(RESERVED_PREFIX)]
    if reserved:
        raise RetrievalError(
            f"entity_df columns {reserved} use the reserved prefix {RESERVED_PREFIX!r}"
        )
    split = split_request(state, projections, full_feature_names, repo_path)
    state.shared_key_dtypes(read.view.name for read in split.reads)
    views = [
        plan_view(
            read.view,
            state.key_dtypes(read.view.name),
            read.asked,
            full_feature_names=full_feature_names,
            repo_path=repo_path,
            fingerprint=state.projection_fingerprint(read.view[list(read.asked)])
            if read.asked
            else "",
            hidden=read.hidden,
        )
        for read in split.reads
    ]
    _check_timestamp_column(entity_schema, views)
    for view in views:
        for key in view.keys:
            _check_key(view, key, entity_schema)
    for step in split.transformations:
        for field in step.request_fields:
            _check_request_field(step, field.column, field.dtype, entity_schema)
    plan = JoinPlan(
        tuple(views),
        tuple(entity_schema.names),
        as_of,
        full_feature_names,
        with_timestamps,
        transformations=split.transformations,
    )
    check_unique(_owners(plan), full_feature_names)
    return plan


def _check_request_field(
    step: Transformation, name: str, dtype: DType, entity_schema: pa.Schema
) -> None:
    """A request field is an entity_df column whose type can be cast to its dtype."""
    if name not in entity_schema.names:
        raise RetrievalError(
            f"on-demand feature view {step.view!r} needs request field {name!r}: give it as "
            f"an entity_df column; entity_df has {list(entity_schema.names)}"
        )
    arrow_type = entity_schema.field(name).type
    if not coercible(arrow_type, dtype):
        raise RetrievalError(
            f"on-demand feature view {step.view!r}: request field {name!r} is {dtype} but "
            f"entity_df holds {arrow_type}; convert the column"
        )


def _owners(plan: JoinPlan) -> list[tuple[str, str]]:
    """Every output column with what it holds, in output order (for the clash check)."""
    found = [(c, f"entity_df column {c!r}") for c in plan.entity_columns]
    for view in plan.views:
        found += [
            (f.output, f"feature '{view.name}:{f.name}'") for f in view.features if not f.hidden
        ]
        if plan.with_timestamps:
            event, created = view.timestamp_columns
            found += [
                (event, f"the event time of view {view.name!r}'s winner"),
                (created, f"the created time of view {view.name!r}'s winner"),
            ]
    for step in plan.transformations:
        found += [(o.output, f"feature '{step.view}:{o.name}'") for o in step.outputs]
    return found
