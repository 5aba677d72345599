"""A point-in-time join planned for BigQuery and run as jobs; its dry run.

``plan_bigquery_join`` reads the entity rows (or asks BigQuery for an entity query's
schema) and builds the engine-neutral ``JoinPlan``; ``BigQueryJoin.run`` uploads or numbers
the entity rows, runs the SQL of ``offline/bigquery_sql.py`` into an expiring table and
returns the training set in the caller's order with the declared types; ``dry_run`` asks
BigQuery what the join would scan, uploading and running nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featurestore.config import BigQueryConfig, RepoConfig
from featurestore.definitions import FeatureViewProjection
from featurestore.errors import ConfigError, RetrievalError
from featurestore.offline import bigquery_sql as sql
from featurestore.offline.plan import ENTITY_TIMESTAMP, AsOf, JoinPlan, ViewJoin, build_join_plan

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.registry import RegistryState


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
    from featurestore.offline.entities import looks_like_path

    return isinstance(entity_df, str) and not looks_like_path(entity_df)


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
    notes += [partitioning_note(join.client, view) for view in join.plan.views]
    job_config = query_config(join.config, purpose="dry_run", project=join.project, dry_run=True)
    job = join.client.query(text, job_config=job_config, location=join.config.location)
    return DryRun(text, int(job.total_bytes_processed or 0), rows, upload, tuple(notes))


def partitioning_note(client: Any, view: ViewJoin) -> str:
    """Whether the time bounds on a view's source prune partitions, from its table's metadata.

    Only a table partitioned on the event-time column is pruned: ingestion time (or another
    column) says nothing about event times, so filtering on it could drop candidates.
    """
    from featurestore.offline.bigquery_jobs import RETRY

    source = sql.bigquery_source(view)
    if source.table is None:
        return f"view {view.name}: a query source; BigQuery prunes what its own filters allow"
    partitioning = client.get_table(source.table, retry=RETRY).time_partitioning
    where = f"view {view.name}: table {source.table}"
    if partitioning is None:
        return f"{where} is not time-partitioned: every row of the columns read is scanned"
    if partitioning.field == source.timestamp_column:
        return f"{where} is partitioned on {source.timestamp_column}: the time bounds prune it"
    column = partitioning.field or "ingestion time"
    return f"{where} is partitioned on {column}, not on {source.timestamp_column}: not pruned"


def _bigquery_type_of(arrow_type: pa.DataType) -> str:
    import pyarrow.types as pt

    if pt.is_integer(arrow_type):
        return "INT64"
    if pt.is_timestamp(arrow_type):
        return "TIMESTAMP"
    return "STRING"
