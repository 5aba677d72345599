"""The BigQuery engine: the same point-in-time join and latest-per-key read, on BigQuery.

The engine-neutral plans are rendered as BigQuery SQL (``offline/bigquery/sql.py``) and run
as query jobs (``offline/bigquery/join.py``, ``offline/bigquery/jobs.py``):

1. entity rows: a DataFrame/Arrow/Parquet/CSV entity table is uploaded (a Parquet load
   job) as ``__fs_row`` (its position: the row identity), the typed join keys and
   ``__fs_t``; an entity SQL query is run once into a numbered table. Both tables expire.
2. the join runs into an expiring result table and comes back as Arrow (over the BigQuery
   Storage API when google-cloud-bigquery-storage is installed);
3. results are put back in the caller's row order by ``__fs_row`` and cast to the declared
   types (BigQuery has only INT64 and FLOAT64: an Int32 feature comes back int32, a
   Float32 one float32).

The client is a ``google.cloud.bigquery.Client`` (given, or opened from the configuration
on first use): the one seam to the network. Without credentials, opening it raises
``OfflineStoreUnavailable`` saying how to provide them; ``dry_run`` still renders the SQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from featurestore.config import BigQueryConfig, RepoConfig
from featurestore.errors import OfflineStoreUnavailable, RetrievalError
from featurestore.offline.bigquery import sql
from featurestore.offline.engine import BATCH_ROWS, Entities, OfflineEngine
from featurestore.offline.entities import EntityInput, is_path, read_entities
from featurestore.offline.plan import BigQuerySourcePlan, JoinPlan, LatestPlan, TileEventsPlan

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.manifest import EngineInfo, SourceFingerprint
    from featurestore.offline.bigquery.join import DryRun
    from featurestore.types import DType


class BigQueryEngine(OfflineEngine):
    """BigQuery as the offline engine (``offline_store: {type: bigquery, ...}``)."""

    def __init__(self, config: RepoConfig, settings: BigQueryConfig, client: Any = None) -> None:
        self.config = config
        self.settings = settings
        self._client = client

    def __repr__(self) -> str:
        return (
            f"BigQueryEngine(project={self.settings.project!r}, dataset={self.settings.dataset!r})"
        )

    @property
    def client(self) -> Any:
        """The BigQuery client, opened on first use (``OfflineStoreUnavailable`` without
        credentials, saying how to provide them)."""
        if self._client is None:
            from featurestore.offline.bigquery.jobs import open_client

            self._client = open_client(self.settings)
        return self._client

    def read_entities(self, entity_df: EntityInput, key_dtypes: Mapping[str, DType]) -> Entities:
        """Local entity rows (to upload), or a SQL string left to run on BigQuery, whose
        schema a dry run asks for now. The query runs with the client's credentials."""
        if not isinstance(entity_df, str) or is_path(entity_df):
            table = read_entities(entity_df, key_dtypes)
            return Entities(table.schema, table=table)
        from google.api_core import exceptions as api

        from featurestore.offline.bigquery.jobs import schema_job_config
        from featurestore.offline.bigquery.schema import arrow_schema

        try:
            job = self.client.query(
                entity_df, job_config=schema_job_config(), location=self.settings.location
            )
        except api.BadRequest as exc:
            raise RetrievalError(f"entity_df SQL was rejected by BigQuery: {exc.message}") from None
        return Entities(arrow_schema(job.schema or []), query=entity_df)

    def check_sources(self, plan: JoinPlan) -> None:
        for view in plan.views:
            sql.bigquery_source(view)

    def join(self, plan: JoinPlan, entities: Entities) -> pa.Table:
        from featurestore.offline.bigquery.join import BigQueryJoin

        return BigQueryJoin(self.client, self.settings, self.config.project, plan, entities).run()

    def read_latest(
        self, plan: LatestPlan, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """See ``OfflineEngine.read_latest``. Per key the winner is the greatest (event_ts,
        created_ts with NULL oldest, then the feature values: BigQuery has no row order),
        the join's order. Streams record batches from an expiring result table. Rows with a
        null key or event time are skipped without a count (counting scans the table)."""
        from google.api_core import exceptions as api

        from featurestore.offline.bigquery import jobs
        from featurestore.offline.bigquery.join import query_error

        client = self.client
        schema = plan.output_schema()
        result = jobs.temp_table(self.settings, "latest")
        try:
            job_config = jobs.query_config(
                self.settings,
                purpose="materialize",
                project=self.config.project,
                destination=result,
            )
            try:
                job = client.query(
                    sql.render_latest(plan), job_config=job_config, location=self.settings.location
                )
                job.result()
            except api.BadRequest as exc:
                raise query_error(exc, "materialization") from None
            jobs.expire_table(client, self.settings, result)
            what = f"feature view {plan.view.name!r}"
            for batch in jobs.fetch_batches(job, batch_rows):
                if batch.num_rows:
                    yield jobs.cast_columns(batch, {f.name: f.type for f in schema}, what)
        finally:
            client.delete_table(result, not_found_ok=True)

    def read_tile_events(
        self, plan: TileEventsPlan, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """See ``OfflineEngine.read_tile_events``: the same events as on DuckDB, complete ties
        (same keys, event and created time) ordered by their values (no row order here)."""
        from google.api_core import exceptions as api

        from featurestore.offline.bigquery import jobs
        from featurestore.offline.bigquery.join import query_error

        client = self.client
        result = jobs.temp_table(self.settings, "tile_events")
        try:
            job_config = jobs.query_config(
                self.settings,
                purpose="materialize",
                project=self.config.project,
                destination=result,
            )
            try:
                job = client.query(
                    sql.render_tile_events(plan),
                    job_config=job_config,
                    location=self.settings.location,
                )
                job.result()
            except api.BadRequest as exc:
                raise query_error(exc, "materialization") from None
            jobs.expire_table(client, self.settings, result)
            for batch in jobs.fetch_batches(job, batch_rows):
                if batch.num_rows:
                    yield batch
        finally:
            client.delete_table(result, not_found_ok=True)

    def describe(self) -> EngineInfo:
        from google.cloud import bigquery

        from featurestore.manifest import EngineInfo

        return EngineInfo(
            "bigquery", bigquery.__version__, self.settings.project, self.settings.location or ""
        )

    def source_fingerprints(self, plan: JoinPlan) -> tuple[SourceFingerprint, ...]:
        """Each BigQuery table's last modification, rows and bytes now; queries as text."""
        from featurestore.manifest import QueryFingerprint, TableFingerprint
        from featurestore.offline.bigquery.jobs import RETRY

        found: list[SourceFingerprint] = []
        for view in plan.views:
            source = view.source
            if not isinstance(source, BigQuerySourcePlan):
                continue
            if source.query is not None:
                found.append(QueryFingerprint(view.name, source.query))
                continue
            table = self.client.get_table(source.table, retry=RETRY)
            found.append(
                TableFingerprint(
                    view=view.name,
                    table=str(source.table),
                    modified_at=table.modified.isoformat() if table.modified else None,
                    row_count=table.num_rows,
                    bytes=table.num_bytes,
                )
            )
        return tuple(found)

    def dry_run(self, plan: JoinPlan, entities: Entities) -> DryRun:
        """What the join would scan (a dry-run job), uploading and running nothing.

        Without credentials the SQL is still rendered; ``DryRun.unavailable`` then says
        that the byte estimate needs them, and how to provide them.
        """
        from featurestore.offline.bigquery.join import dry_run, dry_run_sql

        try:
            client = self.client
        except OfflineStoreUnavailable as exc:
            from dataclasses import replace

            unavailable = f"the byte estimate needs BigQuery, which cannot be reached: {exc}"
            return replace(dry_run_sql(plan, entities), unavailable=unavailable)
        return dry_run(client, self.settings, self.config.project, plan, entities)
