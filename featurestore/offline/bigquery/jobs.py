"""Talking to BigQuery: the client, job configurations, temporary tables, Arrow in and out.

Every job configuration is a real ``google.cloud.bigquery`` object built here, from
``BigQueryConfig``: the seam to the network is the client object alone, so a test (or a
caller) can pass any object with the client's methods. Temporary tables (uploaded entity
rows, query results) live in the configured dataset, are named ``featurestore_*`` and carry
an expiration set when they are created, so an interrupted run leaves nothing permanent.
"""

from __future__ import annotations

import importlib.util
import io
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from google.cloud import bigquery

from featurestore.config import BigQueryConfig
from featurestore.errors import OfflineStoreUnavailable, RetrievalError
from featurestore.types import DType

# Metadata calls give up after a minute instead of the library's default ten.
RETRY = bigquery.DEFAULT_RETRY.with_deadline(60)
_LABEL = re.compile(r"[^a-z0-9_-]")
CREDENTIALS_HELP = (
    "run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
    "to a service-account key file"
)


def open_client(config: BigQueryConfig) -> bigquery.Client:
    """A BigQuery client for the configured project and location.

    Application default credentials (``OfflineStoreUnavailable`` saying how to provide
    them when there are none), or anonymous ones at a configured ``api_endpoint`` (an
    emulator).
    """
    from google.auth.exceptions import DefaultCredentialsError

    if config.api_endpoint is None:
        try:
            return bigquery.Client(project=config.project, location=config.location)
        except DefaultCredentialsError:
            raise OfflineStoreUnavailable(
                "BigQuery credentials were not found (DefaultCredentialsError): " + CREDENTIALS_HELP
            ) from None
    from google.auth.credentials import AnonymousCredentials

    return bigquery.Client(
        project=config.project,
        location=config.location,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": config.api_endpoint},
    )


def storage_api_installed() -> bool:
    """Whether google-cloud-bigquery-storage is installed (results then stream over it)."""
    return importlib.util.find_spec("google.cloud.bigquery_storage") is not None


def temp_table(config: BigQueryConfig, kind: str) -> str:
    """A fresh ``project.dataset.featurestore_<kind>_<hex>`` name."""
    return f"{config.project}.{config.dataset}.featurestore_{kind}_{uuid.uuid4().hex}"


def labels(config: BigQueryConfig, purpose: str, project: str) -> dict[str, str]:
    """Job labels: the configured ones plus what the job is for and which repo ran it."""
    made = {"featurestore": purpose, "featurestore_project": _LABEL.sub("_", project.lower())[:63]}
    return {**made, **dict(config.labels)}


def query_config(
    config: BigQueryConfig,
    *,
    purpose: str,
    project: str,
    destination: str | None = None,
    dry_run: bool = False,
) -> bigquery.QueryJobConfig:
    """The configuration of every query we run.

    Results go to ``destination`` (a temporary table: results over 10 GB need one) unless
    this is a dry run. The query cache is off: a query with a destination table is never
    cached, and a dry run must report what the query would really scan.
    ``maximum_bytes_billed`` applies when configured: BigQuery fails the job, unbilled,
    past it.
    """
    job_config = bigquery.QueryJobConfig(
        labels=labels(config, purpose, project),
        dry_run=dry_run,
        use_query_cache=False,
        use_legacy_sql=False,
    )
    if destination is not None and not dry_run:
        job_config.destination = destination
        job_config.write_disposition = bigquery.WriteDisposition.WRITE_EMPTY
    if config.maximum_bytes_billed is not None:
        job_config.maximum_bytes_billed = config.maximum_bytes_billed
    return job_config


def schema_job_config() -> bigquery.QueryJobConfig:
    """A dry run that only asks BigQuery for a query's result schema."""
    return bigquery.QueryJobConfig(dry_run=True, use_query_cache=False, use_legacy_sql=False)


def create_expiring_table(
    client: Any, config: BigQueryConfig, name: str, schema: Sequence[bigquery.SchemaField] | None
) -> bigquery.Table:
    """Create ``name`` (empty) with an expiration, so it never outlives the configured time."""
    table = bigquery.Table(name, schema=list(schema) if schema is not None else None)
    table.expires = datetime.now(UTC) + timedelta(minutes=config.temp_table_expiration_minutes)
    return client.create_table(table, retry=RETRY)


def expire_table(client: Any, config: BigQueryConfig, name: str) -> None:
    """Give a table written by a query job the configured expiration."""
    table = bigquery.Table(name)
    table.expires = datetime.now(UTC) + timedelta(minutes=config.temp_table_expiration_minutes)
    client.update_table(table, ["expires"], retry=RETRY)


def entity_schema(key_dtypes: Mapping[str, DType], row: str, t: str) -> list[bigquery.SchemaField]:
    """The uploaded entity table: row number, join keys (INT64 or STRING), entity time."""
    return [
        bigquery.SchemaField(row, "INT64", mode="REQUIRED"),
        *[bigquery.SchemaField(name, dtype.bigquery) for name, dtype in key_dtypes.items()],
        bigquery.SchemaField(t, "TIMESTAMP"),
    ]


def load_config(schema: Sequence[bigquery.SchemaField]) -> bigquery.LoadJobConfig:
    """Append Parquet into a table created with ``schema`` (and its expiration)."""
    return bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET,
        schema=list(schema),
        write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
    )


def upload_entities(
    client: Any,
    config: BigQueryConfig,
    rows: pa.Table,
    schema: Sequence[bigquery.SchemaField],
) -> str:
    """Load ``rows`` (columns as ``schema``) into a new expiring table; return its name.

    A load job from Parquet: free in BigQuery, typed, no row-by-row inserts.
    """
    import pyarrow.parquet as pq

    name = temp_table(config, "entities")
    create_expiring_table(client, config, name, schema)
    buffer = io.BytesIO()
    pq.write_table(rows, buffer)
    buffer.seek(0)
    job = client.load_table_from_file(
        buffer, name, job_config=load_config(schema), location=config.location
    )
    job.result()
    return name


def fetch_arrow(job: Any) -> pa.Table:
    """A finished query's rows as Arrow (over the Storage API when it is installed)."""
    return job.result().to_arrow(create_bqstorage_client=storage_api_installed())


def fetch_batches(job: Any, page_size: int) -> Iterator[pa.RecordBatch]:
    """A finished query's rows as a stream of record batches (Storage API when installed;
    otherwise pages of ``page_size`` rows over the REST API)."""
    storage = None
    if storage_api_installed():
        # An optional package: imported by name, as it may be absent (mypy cannot see it).
        bigquery_storage = importlib.import_module("google.cloud.bigquery_storage")
        storage = bigquery_storage.BigQueryReadClient()
    yield from job.result(page_size=page_size).to_arrow_iterable(bqstorage_client=storage)


def cast_columns(
    table: pa.Table | pa.RecordBatch, types: Mapping[str, pa.DataType], what: str
) -> Any:
    """Cast BigQuery's 64-bit columns back to the declared Arrow types (int32, float32...).

    A float32 value round-trips exactly through FLOAT64; an INT64 out of int32 range
    means the source holds values the declared type cannot: an error naming the column.
    """
    for name, target in types.items():
        index = table.schema.get_field_index(name)
        column = table.column(index)
        if column.type == target:
            continue
        try:
            column = column.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise RetrievalError(
                f"{what}: column {name!r} came back from BigQuery as {column.type} and does "
                f"not fit its declared type {target}: {exc}"
            ) from None
        table = table.set_column(index, name, column)
    return table
