"""The embedded offline engine: point-in-time joins and latest-per-key reads on DuckDB.

DuckDB reads the Parquet sources itself (only the needed columns) and returns Arrow; no
source is ever pulled into pandas. The SQL lives in ``offline/duckdb_sql.py``. Before a
view's files are read, their schemas are checked against the plan (the one schema check
of ``sources.py``), so a column dropped or retyped since ``apply`` is an error naming the
view, the column and the file, not a DuckDB binder error.

Entity rows given as SQL run in the process's DuckDB with its full file access (see
``offline/entities.py``): pass SQL only from trusted code.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from featurestore.config import DuckDBConfig, RepoConfig
from featurestore.errors import RetrievalError, SchemaMismatchError, SkippedRowsWarning
from featurestore.offline import duckdb_sql as sql
from featurestore.offline.aggregate import CODE, TS, aggregate_join
from featurestore.offline.engine import BATCH_ROWS, Entities, OfflineEngine
from featurestore.offline.entities import EntityInput, probe_table, read_entities
from featurestore.offline.plan import (
    ENTITY_TIMESTAMP,
    FileSourcePlan,
    JoinPlan,
    LatestPlan,
    TileEventsPlan,
    ViewJoin,
)
from featurestore.sources import ARROW_TYPES, check_columns

if TYPE_CHECKING:
    from datetime import datetime

    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featurestore.manifest import EngineInfo, FileFingerprint
    from featurestore.types import DType


PACKED_BITS = 62  # an aggregated view's key code and event time packed in one BIGINT: at most
# this many bits (duckdb_sql.render_agg_events), else sorted and returned as two columns


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


def open_source_file(view: str, path: str) -> pq.ParquetFile:
    """One of ``view``'s source files, opened (its footer read); a ``RetrievalError`` naming
    the view and the file when it is gone or no readable Parquet (cut short, replaced)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except FileNotFoundError:
        hint = " (compact-pushes merged it since the job listed the files?)"
        raise RetrievalError(
            f"feature view {view!r}: {path} is gone"
            f"{hint if '/push-' in path.replace(os.sep, '/') else ''}; build the job again"
        ) from None
    except (pa.ArrowException, OSError) as exc:
        raise RetrievalError(
            f"feature view {view!r}: cannot read {path}: {str(exc).rstrip('.')}"
        ) from None


def check_files(view: ViewJoin) -> bool:
    """Check every file of the view's source against the plan; return whether a key or the
    event time may hold a null (Parquet statistics say no without a scan).

    The plan was made from what ``apply`` checked; a file may have changed since. A column
    the plan reads that is missing or of another type is a ``SchemaMismatchError`` naming
    the view, the file and the column, and saying to re-run ``apply``.
    """
    source = sql.file_source(view)
    values = (
        view.aggregated_columns if view.aggregations else [(f.name, f.dtype) for f in view.features]
    )
    needed = [(k.name, k.dtype) for k in view.keys] + list(values)
    nullable = [k.name for k in view.keys] + [source.timestamp_column]
    maybe_null = False
    for path in source.paths:
        parquet = open_source_file(view.name, path)
        schema = parquet.schema_arrow
        try:
            check_columns(
                f"feature view {view.name!r} (source file {path})",
                {f.name: f.type for f in schema},
                ARROW_TYPES,
                timestamps=[
                    (source.timestamp_column, "timestamp"),
                    (source.created_column, "created timestamp"),
                ],
                declared=needed,
            )
        except SchemaMismatchError as exc:
            raise SchemaMismatchError(
                f"{exc}. The source changed since it was applied: update the definition if "
                "needed and re-run `featurestore apply`, which checks every source"
            ) from None
        meta = parquet.metadata
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for name in nullable:
                stats = group.column(names.index(name)).statistics
                if stats is None or not stats.has_null_count or stats.null_count:
                    maybe_null = True
    return maybe_null


@contextlib.contextmanager
def reading_source(view: ViewJoin) -> Iterator[None]:
    """Turn a DuckDB error while a query reads the view's files into a ``RetrievalError``
    naming the view and its source.

    ``check_files`` checked the files just before, so such an error means a file changed
    under the query (replaced, truncated, deleted, retyped): the query is the second read of
    the files, and nothing but a file system lock could make the two one.
    """
    import duckdb

    try:
        yield
    except duckdb.Error as exc:  # DuckDB's message may span lines: the first says it
        paths = sql.file_source(view).paths
        source = (
            paths[0] if len(paths) == 1 else f"{len(paths)} files in {os.path.commonpath(paths)}"
        )
        raise RetrievalError(
            f"feature view {view.name!r}: reading its source ({source}) failed: "
            f"{str(exc).splitlines()[0]}. Did a file change while it was read? Nothing was "
            "returned or written from it; run again once the source is complete"
        ) from None


def warn_skipped_rows(con: duckdb.DuckDBPyConnection, view: ViewJoin) -> int:
    """Check the view's files (``check_files``), then count its source rows with a null key
    or event time and warn if any; return the count."""
    if not check_files(view):
        return 0
    with reading_source(view):
        skipped: int = con.execute(sql.render_skipped_count(view)).fetchall()[0][0]
    if skipped:
        warnings.warn(
            f"feature view {view.name!r}: skipped {skipped} source row(s) with a null join key "
            f"or a null event time ({sql.file_source(view).timestamp_column!r})",
            SkippedRowsWarning,
            stacklevel=4,
        )
    return skipped


def run_join(con: duckdb.DuckDBPyConnection, plan: JoinPlan, entities: pa.Table) -> pa.Table:
    """Execute the point-in-time join; every entity column and row in order, then the plan's
    outputs (``JoinPlan.output_schema``).

    One query per view, one after the other, so only one view's sorted source is held at
    a time; each result comes back in DuckDB's order with ``__fs_row`` and is put back in
    the caller's order by an O(n) inverse permutation rather than a sort.
    """
    import numpy as np
    import pyarrow.compute as pc

    for view in plan.views:
        warn_skipped_rows(con, view)
    schema = plan.output_schema()
    times = pc.min_max(entities[ENTITY_TIMESTAMP]).as_py()
    con.register(sql.ENTITIES, probe_table(plan, entities))
    table = entities
    try:
        for index, view in enumerate(plan.views):
            if view.aggregations is not None:
                with reading_source(view):
                    outputs = join_aggregated(con, plan, index, times["min"], times["max"])
            else:
                *setup, query = sql.render_view_join(plan, index, times["min"], times["max"])
                with reading_source(view):
                    for statement in setup:
                        con.execute(statement)
                    result = con.sql(query).to_arrow_table()
                rows = result[sql.ROW].to_numpy()
                order = np.empty(len(rows), dtype=np.int64)
                order[rows] = np.arange(len(rows), dtype=np.int64)
                outputs = result.drop_columns([sql.ROW]).take(order)
            for name in outputs.column_names:
                field = schema.field(name)
                table = table.append_column(field, outputs[name].cast(field.type))
    finally:
        con.execute(f"DROP TABLE IF EXISTS {sql.LATEST_TABLE}")
        con.execute(f"DROP TABLE IF EXISTS {sql.AGG_KEYS}")
        con.unregister(sql.ENTITIES)
    return table


def join_aggregated(
    con: duckdb.DuckDBPyConnection,
    plan: JoinPlan,
    index: int,
    t_min: datetime | None,
    t_max: datetime | None,
) -> pa.Table:
    """An aggregated view's outputs for every entity row, in the caller's order: DuckDB
    numbers the keys and sorts the events (``duckdb_sql.render_agg_events``), numpy does the
    rest (``aggregations.offline``)."""
    from datetime import timedelta

    from featurestore.online.codec import timestamp_us

    view = plan.views[index]
    assert view.aggregations is not None
    con.execute(sql.render_agg_keys(view))
    rows = con.sql(sql.render_agg_rows(view)).to_arrow_table()
    packed = None
    if t_min is not None and t_max is not None:
        keys = con.execute(f"SELECT count(*) FROM {sql.AGG_KEYS}").fetchall()[0][0]
        oldest = timestamp_us(t_min - timedelta(microseconds=view.aggregations.longest_us))
        bits = (timestamp_us(t_max) - oldest + 1).bit_length()
        if max(keys, 1).bit_length() + bits <= PACKED_BITS:
            packed = (oldest, bits)
    events = con.sql(sql.render_agg_events(view, sql.agg_prune(view, t_min, t_max), packed))
    found = events.to_arrow_table()
    if packed is not None:
        found = _unpack(found, *packed)
    return aggregate_join(plan, view, rows, found)


def _unpack(events: pa.Table, oldest: int, bits: int) -> pa.Table:
    """``events`` with ``__fs_packed`` (``render_agg_events``) split into the key code
    (``__fs_code``) and the event time in µs (``__fs_ts``), as ``aggregate_join`` reads them."""
    import pyarrow as pa

    packed = events[sql.PACKED].to_numpy()
    code = pa.array(packed >> bits)
    ts = pa.array((packed & ((1 << bits) - 1)) + oldest)
    return events.drop_columns([sql.PACKED]).add_column(0, CODE, code).add_column(1, TS, ts)


class DuckDBEngine(OfflineEngine):
    """The embedded engine: Parquet sources, DuckDB SQL (``offline/duckdb_sql.py``).

    Each call opens its own cursor of the process's DuckDB (``connect``) and closes it.
    """

    def __init__(self, config: RepoConfig, settings: DuckDBConfig) -> None:
        self.config = config
        self.settings = settings

    def __repr__(self) -> str:
        return f"DuckDBEngine({self.settings})"

    def read_entities(self, entity_df: EntityInput, key_dtypes: Mapping[str, DType]) -> Entities:
        """Entity rows as Arrow; a SQL string runs in this process's DuckDB (full file access:
        trusted code only)."""
        table = read_entities(entity_df, key_dtypes, self._run_sql)
        return Entities(table.schema, table=table)

    def _run_sql(self, query: str) -> pa.Table:
        import duckdb

        con = connect(self.settings)
        try:
            return con.sql(query).to_arrow_table()
        except duckdb.Error as exc:  # DuckDB's message may span lines: the first says it
            raise RetrievalError(f"entity_df SQL failed: {str(exc).splitlines()[0]}") from None
        finally:
            con.close()

    def check_sources(self, plan: JoinPlan) -> None:
        for view in plan.views:
            sql.file_source(view)

    def join(self, plan: JoinPlan, entities: Entities) -> pa.Table:
        if entities.table is None:
            raise RetrievalError("the DuckDB engine joins local entity rows, not a remote query")
        con = connect(self.settings)
        try:
            return run_join(con, plan, entities.table)
        finally:
            con.close()

    def read_latest(
        self, plan: LatestPlan, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """See ``OfflineEngine.read_latest``. The order key is the join's: (event_ts,
        created_ts with NULL oldest, file, row)."""
        lower = "TRUE" if plan.start is None else f"{sql.EVENT} >= {sql.time_literal(plan.start)}"
        late = (
            "FALSE"
            if plan.created_after is None
            else f"{sql.CREATED} > {sql.time_literal(plan.created_after)}"
        )
        where = f"{sql.EVENT} <= {sql.time_literal(plan.end)} AND ({lower} OR {late})"
        schema = plan.output_schema()
        con = connect(self.settings)
        try:
            warn_skipped_rows(con, plan.view)
            # The GROUP BY reads every file before the first batch: a file changed under
            # the read fails here, before anything is written online.
            with reading_source(plan.view):
                reader = con.sql(sql.render_latest(plan.view, where)).to_arrow_reader(batch_rows)
                for batch in reader:
                    if batch.num_rows:
                        yield batch.cast(schema)
        finally:
            con.close()

    def read_tile_events(
        self, plan: TileEventsPlan, *, batch_rows: int = BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """See ``OfflineEngine.read_tile_events``."""
        con = connect(self.settings)
        try:
            warn_skipped_rows(con, plan.view)
            with reading_source(plan.view):  # the ORDER BY reads every file first
                reader = con.sql(sql.render_tile_events(plan)).to_arrow_reader(batch_rows)
                for batch in reader:
                    if batch.num_rows:
                        yield batch
        finally:
            con.close()

    def describe(self) -> EngineInfo:
        import duckdb

        from featurestore.manifest import EngineInfo

        return EngineInfo("duckdb", duckdb.__version__)

    def source_fingerprints(self, plan: JoinPlan) -> tuple[FileFingerprint, ...]:
        """Path, size, modification time and row count of every Parquet file the plan reads."""
        from datetime import UTC, datetime

        from featurestore.manifest import FileFingerprint

        found = []
        for view in plan.views:
            if not isinstance(view.source, FileSourcePlan):
                continue
            for path in view.source.paths:
                rows = open_source_file(view.name, path).metadata.num_rows
                try:
                    stat = os.stat(path)
                except OSError as exc:
                    raise RetrievalError(f"feature view {view.name!r}: {exc}") from None
                found.append(
                    FileFingerprint(
                        view=view.name,
                        path=path,
                        size=stat.st_size,
                        modified_at=datetime.fromtimestamp(stat.st_mtime, UTC).isoformat(),
                        row_count=rows,
                    )
                )
        return tuple(found)
