"""The offline engine at scale: the same point-in-time join and latest-per-key read on BigQuery.

The ``JoinPlan`` the DuckDB engine renders is rendered here as BigQuery SQL
(``offline/bigquery_sql.py``) and run as query jobs (``offline/bigquery_join.py``,
``offline/bigquery_jobs.py``):

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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featurestore.config import RepoConfig
from featurestore.definitions import FeatureService, FeatureView, FeatureViewProjection
from featurestore.offline import bigquery_sql as sql
from featurestore.offline.bigquery_join import DryRun, bigquery_config, dry_run, plan_bigquery_join
from featurestore.offline.plan import AsOf, BigQuerySourcePlan, JoinPlan, plan_view
from featurestore.types import DType

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.registry import RegistryState
    from featurestore.training import RetrievalJob


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
