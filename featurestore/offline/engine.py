"""The offline engine interface, and ``open_offline_engine`` choosing the configured one.

An offline engine answers the two questions the rest of the library asks of source data,
both planned engine-neutrally in ``offline/plan.py``:

* the point-in-time join of a ``JoinPlan`` onto entity rows (training sets, batch
  scoring, replaying logged requests), and
* the latest row per entity key of a ``LatestPlan`` (materialization).

Every engine gives the same answers (the semantics in ``offline/plan.py``; the one
difference, BigQuery's order among complete ties, is documented in
``offline/bigquery/sql.py``). Two engines implement it: ``DuckDBEngine``
(``offline/duckdb.py``, embedded, reads Parquet files) and ``BigQueryEngine``
(``offline/bigquery/``, reads BigQuery tables and queries). ``training.historical_job`` is
the one place that turns an engine and a plan into a ``RetrievalJob``.

The sequence for a training set::

    engine = open_offline_engine(config)
    entities = engine.read_entities(entity_df, request_key_dtypes(state, projections))
    plan = build_join_plan(state, projections, entities.schema, ...)
    engine.check_sources(plan)          # a view this engine cannot read: said now
    table = engine.join(plan, entities)  # may run much later (RetrievalJob is lazy)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featurestore.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.config import RepoConfig
    from featurestore.manifest import EngineInfo, SourceFingerprint
    from featurestore.offline.entities import EntityInput
    from featurestore.offline.plan import JoinPlan, LatestPlan, TileEventsPlan
    from featurestore.types import DType

BATCH_ROWS = 65_536  # rows per record batch of read_latest


@dataclass(frozen=True)
class Entities:
    """The entity side of a join, read before planning.

    ``table``: every entity column, local, ``event_timestamp`` as UTC microseconds
    (``offline/entities.py``); or ``query``: a SQL query the engine runs where the data
    is (BigQuery), ``table`` then None. ``schema`` is the entity columns' Arrow schema (a
    query's as the engine reports it), which the join plan checks.
    """

    schema: pa.Schema
    table: pa.Table | None = None
    query: str | None = None

    @property
    def num_rows(self) -> int | None:
        """How many entity rows (None for a query, known only once it runs)."""
        return None if self.table is None else self.table.num_rows


class OfflineEngine(ABC):
    """What an offline engine does. Implementations hold their configuration (and, for
    BigQuery, a client) and open connections per call; they are cheap to create."""

    @abstractmethod
    def read_entities(self, entity_df: EntityInput, key_dtypes: Mapping[str, DType]) -> Entities:
        """Read a request's entity rows (``offline/entities.py`` lists what ``entity_df``
        may be; a SQL string runs on this engine). ``key_dtypes``: the request's join keys
        (a CSV file's key columns are read with them). ``RetrievalError`` names a problem."""

    @abstractmethod
    def check_sources(self, plan: JoinPlan) -> None:
        """``RetrievalError`` naming the first planned view whose source this engine
        cannot read (DuckDB reads files, BigQuery tables and queries)."""

    @abstractmethod
    def join(self, plan: JoinPlan, entities: Entities) -> pa.Table:
        """Run the point-in-time join (semantics: ``offline/plan.py``).

        Returns every entity column and row in the caller's order (an entity query's rows in
        the order the engine numbered them), then ``plan.output_schema()``'s columns, each
        with its declared Arrow type; nulls where no source row qualified. Source rows with
        a null key or event time never qualify.
        """

    @abstractmethod
    def read_latest(
        self, plan: LatestPlan, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """Stream the latest candidate row per entity key (``LatestPlan``), as record
        batches of at most ``batch_rows`` rows with ``plan.output_schema()``, one row per
        key overall. NaN stays NaN; naive datetimes are UTC."""

    @abstractmethod
    def read_tile_events(
        self, plan: TileEventsPlan, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """Stream an aggregated view's events for materialization (``TileEventsPlan``: the
        keys with a candidate event, their events from the first tile it touches, sorted
        by keys and the join's order), as record batches of at most ``batch_rows`` rows."""

    @abstractmethod
    def describe(self) -> EngineInfo:
        """The engine's name and version (and BigQuery's project and location), for the
        training-set manifest."""

    @abstractmethod
    def source_fingerprints(self, plan: JoinPlan) -> tuple[SourceFingerprint, ...]:
        """What each planned view's source was at planning time (files: size, modification
        time and rows; BigQuery tables: modification time, rows and bytes; queries: text)."""


def open_offline_engine(config: RepoConfig, *, bigquery_client: Any = None) -> OfflineEngine:
    """The offline engine ``featurestore.yaml`` configures; never another one.

    ``offline_store: {type: duckdb}`` (the default) gives ``DuckDBEngine``; ``{type:
    bigquery, ...}`` gives ``BigQueryEngine``, with ``bigquery_client`` (a
    ``google.cloud.bigquery.Client``, or any object with its methods) or, when None, a
    client opened from the configuration on first use. A client given for a DuckDB
    repo is a ``ConfigError``: it would silently go unused.
    """
    from featurestore.config import BigQueryConfig

    if isinstance(config.offline_store, BigQueryConfig):
        from featurestore.offline.bigquery import BigQueryEngine

        return BigQueryEngine(config, config.offline_store, bigquery_client)
    if bigquery_client is not None:
        raise ConfigError(
            "a BigQuery client was given but featurestore.yaml configures the duckdb offline "
            "store; set offline_store type bigquery, or pass no client"
        )
    from featurestore.offline.duckdb import DuckDBEngine

    return DuckDBEngine(config, config.offline_store)
