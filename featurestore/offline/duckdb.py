"""The embedded offline engine: point-in-time joins and latest-per-key reads on DuckDB.

DuckDB reads the Parquet sources itself (only the needed columns) and returns Arrow; no
source is ever pulled into pandas. The SQL lives in ``offline/duckdb_sql.py``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from featurestore.config import DuckDBConfig, RepoConfig
from featurestore.definitions import FeatureService, FeatureView, FeatureViewProjection
from featurestore.errors import SkippedRowsWarning
from featurestore.offline import duckdb_sql as sql
from featurestore.offline.entities import EntityInput, load_entities, normalize_timestamps
from featurestore.offline.plan import (
    ENTITY_TIMESTAMP,
    AsOf,
    JoinPlan,
    ViewJoin,
    build_join_plan,
    plan_view,
)
from featurestore.types import DType

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from featurestore.registry import RegistryState
    from featurestore.training import RetrievalJob


@functools.cache
def _database(memory_limit: str | None, threads: int | None) -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB for these settings (opening one costs ~40 ms)."""
    import duckdb

    database = duckdb.connect()
    if memory_limit:
        database.execute(f"SET memory_limit = {sql.literal(str(memory_limit))}")
    if threads:
        database.execute(f"SET threads = {int(threads)}")
    return database


def connect(config: DuckDBConfig | None = None) -> duckdb.DuckDBPyConnection:
    """A fresh DuckDB connection in UTC, with ``memory_limit``/``threads`` from config.

    A cursor of one in-memory database per process: its registered tables, temporary
    tables and settings are its own. Close it when done.
    """
    config = config or DuckDBConfig()
    con = _database(config.memory_limit, config.threads).cursor()
    # Naive timestamps (in sources and entity rows) are read as UTC.
    con.execute("SET TimeZone = 'UTC'")
    return con


def warn_skipped_rows(con: duckdb.DuckDBPyConnection, view: ViewJoin) -> int:
    """Count the view's source rows with a null key or event time, warn if any; return it.

    Parquet statistics answer without a scan when no such column holds a null.
    """
    import pyarrow.parquet as pq

    source = sql.file_source(view)
    columns = [k.name for k in view.keys] + [source.timestamp_column]
    maybe_null = False
    for path in source.paths:
        meta = pq.ParquetFile(path).metadata
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for name in columns:
                stats = group.column(names.index(name)).statistics
                if stats is None or not stats.has_null_count or stats.null_count:
                    maybe_null = True
    if not maybe_null:
        return 0
    skipped = con.execute(sql.render_skipped_count(view)).fetchall()[0][0]
    if skipped:
        warnings.warn(
            f"feature view {view.name!r}: skipped {skipped} source row(s) with a null join key "
            f"or a null event time ({source.timestamp_column!r})",
            SkippedRowsWarning,
            stacklevel=3,
        )
    return skipped


def _probe_table(plan: JoinPlan, entities: pa.Table) -> pa.Table:
    """The narrow table DuckDB joins: row position, typed join keys, event time."""
    import numpy as np
    import pyarrow as pa

    columns = {sql.ROW: pa.array(np.arange(entities.num_rows, dtype=np.int64))}
    for name, dtype in plan.key_dtypes.items():
        target = pa.int64() if sql.join_type(dtype) == "BIGINT" else pa.string()
        columns[name] = entities[name].cast(target)
    columns[sql.T] = entities[ENTITY_TIMESTAMP]
    return pa.table(columns)


def output_schema(plan: JoinPlan) -> pa.Schema:
    """The features' part of the result schema: each feature with its declared Arrow type."""
    import pyarrow as pa

    return pa.schema([(f.output, f.dtype.to_arrow()) for f in plan.feature_columns])


def run_join(con: duckdb.DuckDBPyConnection, plan: JoinPlan, entities: pa.Table) -> pa.Table:
    """Execute the point-in-time join; every entity column and row in order, then features.

    One query per view, one after the other, so only one view's sorted source is held at
    a time; each result comes back in DuckDB's order with ``__fs_row`` and is put back in
    the caller's order by an O(n) inverse permutation rather than a sort.
    """
    import numpy as np

    for view in plan.views:
        warn_skipped_rows(con, view)
    import pyarrow.compute as pc

    schema = output_schema(plan)
    times = pc.min_max(entities[ENTITY_TIMESTAMP]).as_py()
    con.register(sql.ENTITIES, _probe_table(plan, entities))
    table = entities
    try:
        for index in range(len(plan.views)):
            *setup, query = sql.render_view_join(plan, index, times["min"], times["max"])
            for statement in setup:
                con.execute(statement)
            result = con.sql(query).to_arrow_table()
            rows = result[sql.ROW].to_numpy()
            order = np.empty(len(rows), dtype=np.int64)
            order[rows] = np.arange(len(rows), dtype=np.int64)
            features = result.drop_columns([sql.ROW]).take(order)
            for name in features.column_names:
                table = table.append_column(
                    schema.field(name), features[name].cast(schema.field(name).type)
                )
    finally:
        con.execute(f"DROP TABLE IF EXISTS {sql.LATEST_TABLE}")
        con.unregister(sql.ENTITIES)
    return table


def historical_job(
    config: RepoConfig,
    state: RegistryState,
    entity_df: EntityInput,
    projections: Sequence[FeatureViewProjection],
    service: FeatureService | None,
    *,
    full_feature_names: bool = False,
    as_of: AsOf = "event",
) -> RetrievalJob:
    """Plan a training set on DuckDB; the join runs when the job's result is first asked for."""
    import duckdb

    from featurestore.training import RetrievalJob, file_source_fingerprints

    offline = config.offline_store if isinstance(config.offline_store, DuckDBConfig) else None
    # One connection (opening one costs ~40 ms): it runs an entity_df given as SQL, then
    # the join, and is closed once the join has run.
    con = connect(offline)
    entities = normalize_timestamps(load_entities(entity_df, con))
    plan = build_join_plan(
        state, projections, entities.schema, full_feature_names, as_of, config.repo_path
    )

    def execute() -> pa.Table:
        try:
            return run_join(con, plan, entities)
        finally:
            con.close()

    service_info = None
    if service is not None:
        service_info = (service.name, state.service_record(service.name).fingerprint)
    return RetrievalJob(
        plan,
        execute,
        engine={"name": "duckdb", "version": duckdb.__version__},
        service=service_info,
        sources=file_source_fingerprints(plan),
    )


def read_latest(
    config: RepoConfig,
    view: FeatureView,
    key_dtypes: Mapping[str, DType],
    *,
    end: datetime,
    start: datetime | None = None,
    created_after: datetime | None = None,
    batch_rows: int = 65_536,
) -> Iterator[pa.RecordBatch]:
    """The latest source row per entity key, as Arrow record batches (for materialization).

    Candidates: non-null keys and event time, ``event_ts <= end``, and ``event_ts >= start``
    (no bound when ``start`` is None) or ``created_ts > created_after`` (a late row). Per
    key the winner is the greatest (event_ts, created_ts with NULL oldest, file, row): the
    same tie-break as the training-set join. Columns: join keys, features (declared Arrow
    types; NaN stays NaN), ``event_ts`` and ``created_ts`` as timestamp[us, UTC] (created
    is null when the source has none). Naive datetimes are read as UTC.
    """
    import pyarrow as pa

    plan = plan_view(
        view, key_dtypes, view.feature_names, full_feature_names=False, repo_path=config.repo_path
    )
    lower = "TRUE" if start is None else f"{sql.EVENT} >= {sql.time_literal(start)}"
    late = (
        "FALSE" if created_after is None else f"{sql.CREATED} > {sql.time_literal(created_after)}"
    )
    where = f"{sql.EVENT} <= {sql.time_literal(end)} AND ({lower} OR {late})"
    utc = pa.timestamp("us", tz="UTC")
    schema = pa.schema(
        [(k.name, k.dtype.to_arrow()) for k in plan.keys]
        + [(f.name, f.dtype.to_arrow()) for f in plan.features]
        + [("event_ts", utc), ("created_ts", utc)]
    )
    offline = config.offline_store if isinstance(config.offline_store, DuckDBConfig) else None
    con = connect(offline)
    try:
        warn_skipped_rows(con, plan)
        reader = con.sql(sql.render_latest(plan, where)).to_arrow_reader(batch_rows)
        for batch in reader:
            if batch.num_rows:
                yield batch.cast(schema)
    finally:
        con.close()
