"""The offline engine at scale: the same point-in-time join and latest-per-key read on BigQuery.

The ``JoinPlan`` the DuckDB engine renders is rendered here as BigQuery SQL
(``offline/bigquery_sql.py``) and run as query jobs (``offline/bigquery_jobs.py``):

1. entity rows: a DataFrame/Arrow/Parquet entity table is uploaded (a Parquet load job)
   as ``__fs_row`` (its position: the row identity), the typed join keys and ``__fs_t``;
   an entity SQL query is run once into a numbered table. Both tables expire.
2. the join runs into an expiring result table and comes back as Arrow (over the
   BigQuery Storage API when google-cloud-bigquery-storage is installed);
3. results are put back in the caller's row order by ``__fs_row`` and cast to the
   declared types (BigQuery has only INT64 and FLOAT64: an Int32 feature comes back
   int32, a Float32 one float32).

``client`` is a ``google.cloud.bigquery.Client`` (opened from the config when not given):
the one seam to the network.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featurestore.config import BigQueryConfig, RepoConfig
from featurestore.definitions import FeatureService, FeatureView, FeatureViewProjection
from featurestore.errors import ConfigError, RetrievalError
from featurestore.offline import bigquery_sql as sql
from featurestore.offline.plan import (
    ENTITY_TIMESTAMP,
    AsOf,
    BigQuerySourcePlan,
    JoinPlan,
    build_join_plan,
    plan_view,
)
from featurestore.types import DType

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.registry import RegistryState
    from featurestore.training import RetrievalJob

log = logging.getLogger("featurestore.bigquery")


def bigquery_config(config: RepoConfig) -> BigQueryConfig:
    """The repo's BigQuery settings; a ConfigError when the offline store is not BigQuery."""
    if not isinstance(config.offline_store, BigQueryConfig):
        raise ConfigError(
            "this needs offline_store: {type: bigquery, project: ..., dataset: ...} in "
            "featurestore.yaml"
        )
    return config.offline_store


def view_columns(state: RegistryState, plan: JoinPlan) -> list[sql.ViewColumns]:
    """Every feature of each planned view, in schema order (the tie-break order)."""
    return [
        sql.ViewColumns(tuple((f.name, f.dtype) for f in state.view(v.name).features))
        for v in plan.views
    ]


def is_entity_query(entity_df: Any) -> bool:
    """A string that is not a Parquet path is an entity SQL query, run on BigQuery."""
    from featurestore.offline.entities import _looks_like_path

    return isinstance(entity_df, str) and not _looks_like_path(entity_df)


# --- entity rows -----------------------------------------------------------------------


@dataclass
class Entities:
    """The entity side of a request: local rows (to upload) or a SQL query (run on BigQuery)."""

    table: pa.Table | None  # every entity column, local; None for a query
    query: str | None
    schema: pa.Schema  # the entity columns' Arrow schema (a query's as BigQuery reports it)


def load_entity_rows(client: Any, config: BigQueryConfig, entity_df: Any) -> Entities:
    """Read ``entity_df``; for a SQL query, ask BigQuery for its schema (a dry run)."""
    from featurestore.offline.bigquery_jobs import schema_job_config
    from featurestore.offline.bigquery_schema import arrow_schema
    from featurestore.offline.entities import load_entities, normalize_timestamps

    if not is_entity_query(entity_df):
        table = normalize_timestamps(load_entities(entity_df, None))
        return Entities(table, None, table.schema)
    from google.api_core import exceptions as api

    try:
        job = client.query(entity_df, job_config=schema_job_config(), location=config.location)
    except api.BadRequest as exc:
        raise RetrievalError(f"entity_df SQL was rejected by BigQuery: {exc.message}") from None
    return Entities(None, entity_df, arrow_schema(job.schema or []))


def probe_rows(plan: JoinPlan, entities: pa.Table) -> pa.Table:
    """The narrow table uploaded: ``__fs_row`` (the position), typed join keys, ``__fs_t``."""
    import numpy as np
    import pyarrow as pa

    columns = {sql.ROW: pa.array(np.arange(entities.num_rows, dtype=np.int64))}
    for name, dtype in plan.key_dtypes.items():
        columns[name] = entities[name].cast(pa.string() if dtype.name == "String" else pa.int64())
    columns[sql.T] = entities[ENTITY_TIMESTAMP]
    return pa.table(columns)


def time_range(times: pa.ChunkedArray) -> sql.TimeRange:
    """The earliest and latest entity time (None when every time is null)."""
    import pyarrow.compute as pc

    bounds = pc.min_max(times) if len(times) else None
    if bounds is None or not bounds["min"].is_valid:
        return sql.TimeRange(None, None)
    return sql.TimeRange(bounds["min"].as_py(), bounds["max"].as_py())


# --- running ---------------------------------------------------------------------------


@dataclass
class BigQueryJoin:
    """A planned join on BigQuery, run by ``run()`` (at most once per RetrievalJob)."""

    client: Any
    config: BigQueryConfig
    project: str
    plan: JoinPlan
    columns: list[sql.ViewColumns]
    entities: Entities

    def run(self) -> pa.Table:
        """Upload or number the entity rows, run the join, return the training set."""
        from featurestore.offline import bigquery_jobs as jobs

        temporary: list[str] = []
        try:
            if self.entities.table is not None:
                probe = probe_rows(self.plan, self.entities.table)
                schema = jobs.entity_schema(self.plan.key_dtypes, sql.ROW, sql.T)
                entity_table = jobs.upload_entities(self.client, self.config, probe, schema)
                temporary.append(entity_table)
                times = time_range(probe[sql.T])
            else:
                entity_table = self._number_entity_query(self.entities.query or "", temporary)
                times = self._query_time_range(entity_table)
            result = jobs.temp_table(self.config, "training")
            temporary.append(result)
            text = sql.render_join(
                self.plan,
                self.columns,
                sql.table_ref(entity_table),
                times,
                entity_columns=self.entities.table is None,
            )
            job = self._query(text, "training_set", result)
            jobs.expire_table(self.client, self.config, result)
            return self._assemble(jobs.fetch_arrow(job))
        finally:
            for name in temporary:
                self.client.delete_table(name, not_found_ok=True)

    def _query(self, text: str, purpose: str, destination: str | None) -> Any:
        from featurestore.offline.bigquery_jobs import query_config

        job_config = query_config(
            self.config, purpose=purpose, project=self.project, destination=destination
        )
        job = self.client.query(text, job_config=job_config, location=self.config.location)
        job.result()
        return job

    def _number_entity_query(self, query: str, temporary: list[str]) -> str:
        from featurestore.offline.bigquery_jobs import expire_table, temp_table

        name = temp_table(self.config, "entities")
        temporary.append(name)
        self._query(
            sql.render_entity_table(query, self.plan.timestamp_column),
            "entity_rows",
            name,
        )
        expire_table(self.client, self.config, name)
        return name

    def _query_time_range(self, entity_table: str) -> sql.TimeRange:
        text = f"SELECT MIN({sql.T}) AS lo, MAX({sql.T}) AS hi FROM {sql.table_ref(entity_table)}"
        row = (
            self._query(text, "entity_time_range", None)
            .result()
            .to_arrow(create_bqstorage_client=False)
        )
        lo, hi = row["lo"][0], row["hi"][0]
        return sql.TimeRange(lo.as_py(), hi.as_py()) if lo.is_valid else sql.TimeRange(None, None)

    def _assemble(self, result: pa.Table) -> pa.Table:
        """Back to the caller's order, features cast to their declared types."""
        import pyarrow.compute as pc

        from featurestore.offline.bigquery_jobs import cast_columns

        result = result.take(pc.sort_indices(result[sql.ROW]))
        declared = {f.output: f.dtype.to_arrow() for f in self.plan.feature_columns}
        features = cast_columns(result.select(list(declared)), declared, "training set")
        if self.entities.table is None:
            entity_part = result.select(list(self.plan.entity_columns))
        else:
            entity_part = self.entities.table
        if result.num_rows != entity_part.num_rows:
            raise RetrievalError(
                f"BigQuery returned {result.num_rows} rows for {entity_part.num_rows} entity rows"
            )
        table = entity_part
        for name in features.column_names:
            table = table.append_column(name, features[name])
        return table


def _source_fingerprints(client: Any, plan: JoinPlan) -> list[dict[str, Any]]:
    """Each BigQuery table's last modification, rows and bytes at build time; queries as text."""
    from featurestore.offline.bigquery_jobs import RETRY

    found = []
    for view in plan.views:
        source = view.source
        if not isinstance(source, BigQuerySourcePlan):
            continue
        if source.query is not None:
            found.append({"view": view.name, "query": source.query})
            continue
        table = client.get_table(source.table, retry=RETRY)
        found.append(
            {
                "view": view.name,
                "table": source.table,
                "modified_at": table.modified.isoformat() if table.modified else None,
                "row_count": table.num_rows,
                "bytes": table.num_bytes,
            }
        )
    return found


def plan_bigquery_join(
    config: RepoConfig,
    state: RegistryState,
    entity_df: Any,
    projections: Sequence[FeatureViewProjection],
    *,
    full_feature_names: bool,
    as_of: AsOf,
    client: Any = None,
) -> BigQueryJoin:
    """Read the entity rows (or a query's schema) and plan the join; nothing runs yet."""
    from featurestore.offline.bigquery_jobs import open_client

    settings = bigquery_config(config)
    client = client if client is not None else open_client(settings)
    entities = load_entity_rows(client, settings, entity_df)
    plan = build_join_plan(
        state, projections, entities.schema, full_feature_names, as_of, config.repo_path
    )
    for view in plan.views:
        sql.bigquery_source(view)  # a Parquet view cannot be joined here: say so now
    return BigQueryJoin(client, settings, config.project, plan, view_columns(state, plan), entities)


def historical_job(
    config: RepoConfig,
    state: RegistryState,
    entity_df: Any,
    projections: Sequence[FeatureViewProjection],
    service: FeatureService | None,
    *,
    full_feature_names: bool = False,
    as_of: AsOf = "event",
    client: Any = None,
) -> RetrievalJob:
    """Plan a training set on BigQuery; the jobs run when the result is first asked for."""
    from google.cloud import bigquery

    from featurestore.training import RetrievalJob

    join = plan_bigquery_join(
        config,
        state,
        entity_df,
        projections,
        full_feature_names=full_feature_names,
        as_of=as_of,
        client=client,
    )
    service_info = None
    if service is not None:
        service_info = (service.name, state.service_record(service.name).fingerprint)
    return RetrievalJob(
        join.plan,
        join.run,
        engine={
            "name": "bigquery",
            "version": bigquery.__version__,
            "project": join.config.project,
            "location": join.config.location or "",
        },
        service=service_info,
        sources=_source_fingerprints(join.client, join.plan),
    )


# --- dry run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRun:
    """What a training set would cost: the SQL dry-run and the bytes BigQuery would scan."""

    sql: str
    total_bytes_processed: int
    entity_rows: int | None  # uploaded rows (None for an entity SQL query)
    entity_upload_bytes: int | None
    notes: tuple[str, ...]


def dry_run(join: BigQueryJoin) -> DryRun:
    """Dry-run the join without uploading or running anything.

    The entity table does not exist before a run, so the SQL dry-run stands an empty
    relation of the same columns in for uploaded rows (the scan of the sources does not
    depend on them; the pruning bounds are the real ones), or the numbered entity query
    itself (whose bytes it then includes).
    """
    from featurestore.offline.bigquery_jobs import query_config

    notes = []
    if join.entities.table is not None:
        probe = probe_rows(join.plan, join.entities.table)
        times = time_range(probe[sql.T])
        typed = ", ".join(f"{sql.quote(f.name)} {_bigquery_type_of(f.type)}" for f in probe.schema)
        relation = f"(SELECT * FROM UNNEST(ARRAY<STRUCT<{typed}>>[]))"
        rows, upload = probe.num_rows, probe.nbytes
        notes.append(
            f"the {rows} entity rows ({upload} bytes) are uploaded by a load job at run time "
            "(free); the dry run stands an empty table in for them"
        )
    else:
        query = join.entities.query or ""
        relation = f"({sql.render_entity_table(query, join.plan.timestamp_column)})"
        times = sql.TimeRange(sql.EARLIEST, sql.LATEST)
        rows = upload = None
        notes.append(
            "the entity query's time range is only known when it runs: the sources are not "
            "pruned by time in this estimate (an upper bound)"
        )
    text = sql.render_join(
        join.plan, join.columns, relation, times, entity_columns=join.entities.table is None
    )
    job_config = query_config(join.config, purpose="dry_run", project=join.project, dry_run=True)
    job = join.client.query(text, job_config=job_config, location=join.config.location)
    return DryRun(text, int(job.total_bytes_processed or 0), rows, upload, tuple(notes))


def _bigquery_type_of(arrow_type: pa.DataType) -> str:
    import pyarrow.types as pt

    if pt.is_integer(arrow_type):
        return "INT64"
    if pt.is_timestamp(arrow_type):
        return "TIMESTAMP"
    return "STRING"


# --- materialization -------------------------------------------------------------------


def read_latest(
    config: RepoConfig,
    view: FeatureView,
    key_dtypes: Mapping[str, DType],
    *,
    end: datetime,
    start: datetime | None = None,
    created_after: datetime | None = None,
    batch_rows: int = 65_536,
    client: Any = None,
) -> Iterator[pa.RecordBatch]:
    """The latest source row per entity key, read from BigQuery (for materialization).

    The DuckDB engine's contract: candidates have non-null keys and event time,
    ``event_ts <= end`` and (``event_ts >= start``, no bound when None, or
    ``created_ts > created_after``); per key the winner is the greatest (event_ts,
    created_ts with NULL oldest, then the feature values: BigQuery has no row order),
    the same order as the BigQuery join. Columns: join keys and features with their
    declared Arrow types (NaN stays NaN), ``event_ts`` and ``created_ts`` as
    timestamp[us, UTC]. Streams record batches from an expiring result table.
    """
    import pyarrow as pa

    from featurestore.offline import bigquery_jobs as jobs

    settings = bigquery_config(config)
    client = client if client is not None else jobs.open_client(settings)
    plan = plan_view(
        view, key_dtypes, view.feature_names, full_feature_names=False, repo_path=config.repo_path
    )
    columns = sql.ViewColumns(tuple((f.name, f.dtype) for f in view.features))
    text = sql.render_latest(plan, columns, end=end, start=start, created_after=created_after)
    utc = pa.timestamp("us", tz="UTC")
    schema = pa.schema(
        [(k.name, k.dtype.to_arrow()) for k in plan.keys]
        + [(name, dtype.to_arrow()) for name, dtype in columns.all_features]
        + [("event_ts", utc), ("created_ts", utc)]
    )
    result = jobs.temp_table(settings, "latest")
    try:
        job_config = jobs.query_config(
            settings, purpose="materialize", project=config.project, destination=result
        )
        job = client.query(text, job_config=job_config, location=settings.location)
        job.result()
        jobs.expire_table(client, settings, result)
        what = f"feature view {view.name!r}"
        for batch in jobs.fetch_batches(job, batch_rows):
            if batch.num_rows:
                yield jobs.cast_columns(batch, {f.name: f.type for f in schema}, what)
    finally:
        client.delete_table(result, not_found_ok=True)


@dataclass(frozen=True)
class BigQueryEngine:
    """The BigQuery engine bound to one client (None: opened from the config per call),
    with the functions of offline/duckdb.py, so callers choose an engine, not a module."""

    client: Any = None

    def historical_job(
        self,
        config: RepoConfig,
        state: RegistryState,
        entity_df: Any,
        projections: Sequence[FeatureViewProjection],
        service: FeatureService | None,
        *,
        full_feature_names: bool = False,
        as_of: AsOf = "event",
    ) -> RetrievalJob:
        """``historical_job`` above, with this engine's client."""
        return historical_job(
            config,
            state,
            entity_df,
            projections,
            service,
            full_feature_names=full_feature_names,
            as_of=as_of,
            client=self.client,
        )

    def read_latest(
        self,
        config: RepoConfig,
        view: FeatureView,
        key_dtypes: Mapping[str, DType],
        *,
        end: datetime,
        start: datetime | None = None,
        created_after: datetime | None = None,
        batch_rows: int = 65_536,
    ) -> Iterator[pa.RecordBatch]:
        """``read_latest`` above, with this engine's client."""
        return read_latest(
            config,
            view,
            key_dtypes,
            end=end,
            start=start,
            created_after=created_after,
            batch_rows=batch_rows,
            client=self.client,
        )


def dry_run_request(
    config: RepoConfig,
    state: RegistryState,
    entity_df: Any,
    features: Sequence[str] | FeatureService | str,
    *,
    full_feature_names: bool = False,
    as_of: AsOf = "event",
    client: Any = None,
) -> DryRun:
    """Dry-run the training set for ``features`` (refs, a service or its name): SQL and bytes."""
    projections, _ = state.resolve(features)
    join = plan_bigquery_join(
        config,
        state,
        entity_df,
        projections,
        full_feature_names=full_feature_names,
        as_of=as_of,
        client=client,
    )
    return dry_run(join)
