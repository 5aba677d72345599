"""A BigQuerySource's schema, checked at ``apply`` when BigQuery answers.

``SourceSchemas(config, client)`` reads a table's schema (``client.get_table``) or a query's
(a dry-run job), and ``check_bigquery_view`` checks a view's declared fields, keys and
timestamp columns against it with the one schema check (``sources.check_columns``) under
BigQuery's type rule, ``BIGQUERY_TYPES``: only 64-bit numbers, TIMESTAMP-only time columns,
no REPEATED fields.

When BigQuery cannot be reached (no credentials, no network) the check is skipped, loudly:
a warning names the view and the reason, and the declared dtypes are used (join keys must
then be declared with a ``Field``). A table that does not exist, or a query BigQuery
rejects, is an error, never a fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from featurestore.config import BigQueryConfig, RepoConfig
from featurestore.definitions import BigQuerySource, FeatureView
from featurestore.errors import OfflineStoreUnavailable, SchemaMismatchError
from featurestore.sources import TypeRule, check_view_columns
from featurestore.types import Bool, DType, Float64, Int64, String, UnixTimestamp

if TYPE_CHECKING:
    import pyarrow as pa
    from google.cloud.bigquery import SchemaField

log = logging.getLogger("featurestore.bigquery")

# BigQuery's legacy and standard names for the types a feature can have.
_CANONICAL = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}

SchemaReader = Callable[[BigQuerySource], "Sequence[SchemaField] | None"]


def canonical_type(field_type: str) -> str:
    return _CANONICAL.get(field_type.upper(), field_type.upper())


class SourceSchemas:
    """Reads BigQuery sources' schemas; returns None (and logs why) when BigQuery is unreachable.

    ``client`` is a ``google.cloud.bigquery.Client`` (opened from ``config`` on first use
    when not given).
    """

    def __init__(self, config: BigQueryConfig, client: Any = None) -> None:
        self.config = config
        self._client = client

    def __call__(self, source: BigQuerySource) -> Sequence[SchemaField] | None:
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth

        from featurestore.offline.bigquery.jobs import RETRY

        what = source.table or "query"
        try:
            if self._client is None:
                from featurestore.offline.bigquery.jobs import open_client

                self._client = open_client(self.config)
            if source.table is not None:
                table = self._client.get_table(source.table, retry=RETRY, timeout=30)
                return list(table.schema)
            from featurestore.offline.bigquery.jobs import schema_job_config

            job = self._client.query(
                source.query,
                job_config=schema_job_config(),
                location=self.config.location,
                retry=RETRY,
                timeout=30,
            )
            return list(job.schema or [])
        except api.NotFound as exc:
            raise SchemaMismatchError(
                f"BigQuery source {what!r} does not exist: {exc.message}"
            ) from None
        except api.BadRequest as exc:
            raise SchemaMismatchError(f"BigQuery rejected source {what!r}: {exc.message}") from None
        except OfflineStoreUnavailable as exc:
            log.warning(
                "BigQuery is not reachable (%s): source %r was NOT checked against BigQuery; "
                "using the declared dtypes",
                exc,
                what,
            )
            return None
        except (auth.GoogleAuthError, api.GoogleAPIError, OSError) as exc:
            log.warning(
                "BigQuery is not reachable (%s: %s): source %r was NOT checked against "
                "BigQuery; using the declared dtypes",
                type(exc).__name__,
                exc,
                what,
            )
            return None


def arrow_type(field: SchemaField) -> pa.DataType | None:
    """The Arrow type BigQuery returns a column of this type as, or None if unsupported."""
    import pyarrow as pa

    if field.mode == "REPEATED":
        return None
    return {
        "INT64": pa.int64(),
        "FLOAT64": pa.float64(),
        "STRING": pa.string(),
        "BOOL": pa.bool_(),
        "TIMESTAMP": pa.timestamp("us", tz="UTC"),
        "DATETIME": pa.timestamp("us"),
        "DATE": pa.date32(),
    }.get(canonical_type(field.field_type))


def arrow_schema(fields: Sequence[SchemaField]) -> pa.Schema:
    """The Arrow schema of a BigQuery result (unsupported types as null columns)."""
    import pyarrow as pa

    return pa.schema([(f.name, arrow_type(f) or pa.null()) for f in fields])


def _key_dtype(field: SchemaField) -> DType | None:
    return {"INT64": Int64, "STRING": String}.get(canonical_type(field.field_type))


def _value_dtype(field: SchemaField) -> DType | None:
    return {
        "INT64": Int64,
        "FLOAT64": Float64,
        "STRING": String,
        "BOOL": Bool,
        "TIMESTAMP": UnixTimestamp,
    }.get(canonical_type(field.field_type))


BIGQUERY_TYPES: TypeRule[SchemaField] = TypeRule(
    describe=lambda field: str(field.field_type),
    is_timestamp=lambda field: canonical_type(field.field_type) == "TIMESTAMP",
    # BigQuery has only 64-bit numbers: INT64 backs Int32 and Int64, FLOAT64 backs both
    # float widths; results are cast back to the declared type.
    compatible=lambda declared, field: canonical_type(field.field_type) == declared.bigquery,
    key_dtype=_key_dtype,
    value_dtype=_value_dtype,
    timestamp_type="TIMESTAMP",
    key_types="INT64, STRING",
    unusable=lambda field: "is REPEATED (an array)" if field.mode == "REPEATED" else None,
    timestamp_hint="; cast it in a query= source (TIMESTAMP(column) reads it as UTC)",
)
"""BigQuery's type rule for the one schema check (``sources.check_columns``)."""


def check_bigquery_view(view: FeatureView, read_schema: SchemaReader | None) -> dict[str, DType]:
    """Check ``view`` against its BigQuery source's schema; return every join key's dtype.

    Without a reader (the offline store is not BigQuery) or when BigQuery is unreachable,
    warns and returns the declared key dtypes; a key without a declared dtype is then an
    error naming it.
    """
    source = view.batch_source
    if not isinstance(source, BigQuerySource):
        raise TypeError(f"feature view {view.name!r} does not read BigQuery")
    fields = read_schema(source) if read_schema is not None else None
    if fields is None:
        if read_schema is None:
            log.warning(
                "feature view %r reads BigQuery but the offline store is not BigQuery: its "
                "schema was NOT checked; using the declared dtypes",
                view.name,
            )
        return _declared_keys(view)
    return check_view_columns(view, {f.name: f for f in fields}, BIGQUERY_TYPES)


def _declared_keys(view: FeatureView) -> dict[str, DType]:
    declared = view.declared_key_dtypes
    missing = [k for k in view.join_keys if k not in declared]
    if missing:
        raise SchemaMismatchError(
            f"feature view {view.name!r}: the BigQuery source's schema could not be read, so "
            f"declare the dtype of join key(s) {missing} with a Field in the schema"
        )
    return declared


def schema_reader(config: RepoConfig, client: Any = None) -> SchemaReader | None:
    """What ``apply`` checks BigQuery sources with: None unless the offline store is BigQuery."""
    if not isinstance(config.offline_store, BigQueryConfig):
        return None
    return SourceSchemas(config.offline_store, client)
