"""A point-in-time join run on BigQuery as jobs, and its dry run.

``BigQueryJoin.run`` uploads or numbers the entity rows, runs the SQL of
``offline/bigquery/sql.py`` into an expiring table and returns the training set in the
caller's order with the declared types; ``dry_run`` asks BigQuery what the join would
scan, uploading and running nothing (and, without credentials, still gives the SQL).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from featurestore.config import BigQueryConfig
from featurestore.errors import RetrievalError
from featurestore.offline.bigquery import sql
from featurestore.offline.engine import Entities
from featurestore.offline.entities import probe_table
from featurestore.offline.plan import JoinPlan, ViewJoin
from featurestore.types import MAX_TIME, MIN_TIME, check_time

if TYPE_CHECKING:
    import pyarrow as pa


def time_range(times: pa.ChunkedArray) -> sql.TimeRange:
    """The earliest and latest entity time (None when every time is null)."""
    import pyarrow.compute as pc

    bounds = pc.min_max(times) if len(times) else None
    if bounds is None or not bounds["min"].is_valid:
        return sql.TimeRange(None, None)
    return sql.TimeRange(bounds["min"].as_py(), bounds["max"].as_py())


def query_error(exc: Any, what: str) -> RetrievalError:
    """BigQuery's rejection of a query (``google.api_core.exceptions.BadRequest``), in one
    line; a source changed since ``apply`` is the usual cause of an unknown column."""
    return RetrievalError(
        f"BigQuery rejected the {what} query: {exc.message}. If a source's columns changed "
        "since it was applied, re-run `featurestore apply` (it checks every source)"
    )


@dataclass
class BigQueryJoin:
    """A planned join on BigQuery, run by ``run()`` (at most once per RetrievalJob)."""

    client: Any
    config: BigQueryConfig
    project: str
    plan: JoinPlan
    entities: Entities

    def run(self) -> pa.Table:
        """Upload or number the entity rows, run the join, return the training set."""
        from featurestore.offline.bigquery import jobs

        temporary: list[str] = []
        try:
            if self.entities.table is not None:
                probe = probe_table(self.plan, self.entities.table)
                schema = jobs.entity_schema(self.plan.key_dtypes, sql.ROW, sql.T)
                entity_table = jobs.upload_entities(self.client, self.config, probe, schema)
                temporary.append(entity_table)
                times = time_range(probe[sql.T])
            else:
                entity_table = self._number_entity_query(self.entities.query or "", temporary)
                times = self._query_time_range(entity_table)
            plain = replace(
                self.plan, views=tuple(v for v in self.plan.views if v.aggregations is None)
            )
            if plain.views:
                result = jobs.temp_table(self.config, "training")
                temporary.append(result)
                text = sql.render_join(
                    plain,
                    sql.table_ref(entity_table),
                    times,
                    entity_columns=self.entities.table is None,
                )
                job = self._query(text, "training_set", result)
                jobs.expire_table(self.client, self.config, result)
                table = self._assemble(jobs.fetch_arrow(job), plain)
            else:
                table = self._entity_rows(entity_table)
            return self._aggregated(table, entity_table, times, temporary)
        finally:
            for name in temporary:
                self.client.delete_table(name, not_found_ok=True)

    def _query(self, text: str, purpose: str, destination: str | None) -> Any:
        from google.api_core import exceptions as api

        from featurestore.offline.bigquery.jobs import query_config

        job_config = query_config(
            self.config, purpose=purpose, project=self.project, destination=destination
        )
        try:
            job = self.client.query(text, job_config=job_config, location=self.config.location)
            job.result()
        except api.BadRequest as exc:
            raise query_error(exc, purpose.replace("_", " ")) from None
        return job

    def _number_entity_query(self, query: str, temporary: list[str]) -> str:
        from featurestore.offline.bigquery.jobs import expire_table, temp_table

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
        """The numbered entity query's time range, checked against the accepted range (as
        local entity rows are), so ``t - ttl`` stays within BigQuery's TIMESTAMP range."""
        text = f"SELECT MIN({sql.T}) AS lo, MAX({sql.T}) AS hi FROM {sql.table_ref(entity_table)}"
        row = (
            self._query(text, "entity_time_range", None)
            .result()
            .to_arrow(create_bqstorage_client=False)
        )
        lo, hi = row["lo"][0], row["hi"][0]
        if not lo.is_valid:
            return sql.TimeRange(None, None)
        for value in (lo.as_py(), hi.as_py()):
            check_time(value, "the entity query's event_timestamp", RetrievalError)
        return sql.TimeRange(lo.as_py(), hi.as_py())

    def _entity_rows(self, entity_table: str) -> pa.Table:
        """The entity rows alone, in the caller's order (a request of aggregated views only)."""
        if self.entities.table is not None:
            return self.entities.table
        text = f"SELECT * FROM {sql.table_ref(entity_table)} ORDER BY {sql.ROW}"
        result = (
            self._query(text, "entity_rows", None).result().to_arrow(create_bqstorage_client=False)
        )
        return result.select(list(self.plan.entity_columns))

    def _aggregated(
        self, table: pa.Table, entity_table: str, times: sql.TimeRange, temporary: list[str]
    ) -> pa.Table:
        """Add the aggregated views' outputs (their events read here, the values computed by
        featurestore/aggregations/, as on DuckDB), every view's columns in plan order."""

        from featurestore.offline.aggregate import aggregate_join, number_keys
        from featurestore.offline.bigquery import jobs

        added: dict[str, pa.Array] = {}
        for view in self.plan.views:
            if view.aggregations is None:
                continue
            result = jobs.temp_table(self.config, "events")
            temporary.append(result)
            text = sql.render_agg_events(view, sql.table_ref(entity_table), times)
            events = jobs.fetch_arrow(self._query(text, "aggregation_events", result))
            keys = list(view.key_names)
            rows = self._entity_keys(entity_table, keys)
            rows, events = number_keys(keys, rows, events)
            outputs = aggregate_join(self.plan, view, rows, events)
            added.update({name: outputs[name] for name in outputs.column_names})
        if not added:
            return table
        out = table.select(list(self.plan.entity_columns))
        for name in self.plan.output_columns[len(self.plan.entity_columns) :]:
            out = out.append_column(name, added[name] if name in added else table[name])
        return out

    def _entity_keys(self, entity_table: str, keys: list[str]) -> pa.Table:
        """``__fs_row``, the join keys and ``__fs_t`` of every entity row."""
        import pyarrow as pa

        from featurestore.offline.entities import probe_table

        if self.entities.table is not None:
            probe = probe_table(self.plan, self.entities.table)
            return probe.select([sql.ROW, *keys, sql.T])
        columns = ", ".join([sql.ROW, *(sql.quote(k) for k in keys), sql.T])
        text = f"SELECT {columns} FROM {sql.table_ref(entity_table)}"
        found = (
            self._query(text, "entity_keys", None).result().to_arrow(create_bqstorage_client=False)
        )
        return pa.table({name: found[name] for name in found.column_names})

    def _assemble(self, result: pa.Table, plan: JoinPlan) -> pa.Table:
        """Back to the caller's order, outputs cast to their declared types."""
        import pyarrow.compute as pc

        from featurestore.offline.bigquery.jobs import cast_columns

        result = result.take(pc.sort_indices(result[sql.ROW]))
        declared = {f.name: f.type for f in plan.output_schema()}
        outputs = cast_columns(result.select(list(declared)), declared, "training set")
        if self.entities.table is None:
            entity_part = result.select(list(plan.entity_columns))
        else:
            entity_part = self.entities.table
        if result.num_rows != entity_part.num_rows:
            raise RetrievalError(
                f"BigQuery returned {result.num_rows} rows for {entity_part.num_rows} entity rows"
            )
        table = entity_part
        for name in outputs.column_names:
            table = table.append_column(name, outputs[name])
        return table


# --- dry run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRun:
    """What a training set would cost: the SQL and the bytes BigQuery would scan.

    ``total_bytes_processed`` is None when BigQuery could not be asked; ``unavailable``
    then says why and how to fix it (e.g. how to provide credentials).
    """

    sql: str
    total_bytes_processed: int | None
    entity_rows: int | None  # uploaded rows (None for an entity SQL query)
    entity_upload_bytes: int | None
    notes: tuple[str, ...]
    unavailable: str | None = None


def dry_run_sql(plan: JoinPlan, entities: Entities) -> DryRun:
    """The SQL a dry run sends and notes on what it stands in for; bytes not yet estimated
    (``total_bytes_processed`` None). Needs no client.

    The entity table does not exist before a run, so the SQL stands an empty relation of
    the same columns in for uploaded rows (the scan of the sources does not depend on
    them; the pruning bounds are the real ones), or the numbered entity query itself
    (whose bytes it then includes).
    """
    if entities.table is not None:
        probe = probe_table(plan, entities.table)
        times = time_range(probe[sql.T])
        typed = ", ".join(f"{sql.quote(f.name)} {_bigquery_type_of(f.type)}" for f in probe.schema)
        relation = f"(SELECT * FROM UNNEST(ARRAY<STRUCT<{typed}>>[]))"
        rows, upload = probe.num_rows, probe.nbytes
        note = (
            f"the {rows} entity rows ({upload} bytes) are uploaded by a load job at run time "
            "(free); the dry run stands an empty table in for them"
        )
    else:
        query = entities.query or ""
        relation = f"({sql.render_entity_table(query, plan.timestamp_column)})"
        times = sql.TimeRange(MIN_TIME, MAX_TIME)
        rows = upload = None
        note = (
            "the entity query's time range is only known when it runs: the sources are not "
            "pruned by time in this estimate (an upper bound)"
        )
    text = sql.render_join(plan, relation, times, entity_columns=entities.table is None)
    return DryRun(text, None, rows, upload, (note,))


def dry_run(
    client: Any, config: BigQueryConfig, project: str, plan: JoinPlan, entities: Entities
) -> DryRun:
    """Dry-run the join without uploading or running anything: the SQL and its bytes."""
    from featurestore.offline.bigquery.jobs import query_config

    planned = dry_run_sql(plan, entities)
    notes = planned.notes + tuple(partitioning_note(client, view) for view in plan.views)
    job_config = query_config(config, purpose="dry_run", project=project, dry_run=True)
    job = client.query(planned.sql, job_config=job_config, location=config.location)
    return replace(planned, total_bytes_processed=int(job.total_bytes_processed or 0), notes=notes)


def partitioning_note(client: Any, view: ViewJoin) -> str:
    """Whether the time bounds on a view's source prune partitions, from its table's metadata.

    Only a table partitioned on the event-time column is pruned: ingestion time (or another
    column) says nothing about event times, so filtering on it could drop candidates.
    """
    from featurestore.offline.bigquery.jobs import RETRY

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
