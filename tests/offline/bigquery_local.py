"""A stand-in for ``google.cloud.bigquery.Client`` (the network seam) that runs on DuckDB.

BigQuery cannot be reached from here. ``LocalBigQuery`` has the handful of client methods
the engine calls (query, load_table_from_file, create/get/update/delete_table) and runs
every query the way the proof needs: parsed as BigQuery with sqlglot (a query that does
not parse fails, as it would on BigQuery), transpiled to DuckDB (session TimeZone UTC) and
executed on tables named ``"project"."dataset"."table"`` (an attached in-memory database
per project), so ``project.dataset.table`` in the BigQuery SQL reads the local table.

Tables hold only BigQuery's types (INT64 -> BIGINT, FLOAT64 -> DOUBLE, STRING, BOOL,
TIMESTAMP -> TIMESTAMPTZ), so results come back 64-bit as they would from BigQuery and the
engine's cast back to declared types is exercised. Every job configuration it receives is
a real google-cloud-bigquery object, recorded in ``jobs`` for assertions.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot
from google.api_core import exceptions as api
from google.cloud import bigquery

_TO_BIGQUERY = {
    "BIGINT": "INT64",
    "DOUBLE": "FLOAT64",
    "VARCHAR": "STRING",
    "BOOLEAN": "BOOL",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "TIMESTAMP": "DATETIME",
    "DATE": "DATE",
}
_TO_DUCKDB = {
    "INT64": "BIGINT",
    "INTEGER": "BIGINT",
    "FLOAT64": "DOUBLE",
    "FLOAT": "DOUBLE",
    "STRING": "VARCHAR",
    "BOOL": "BOOLEAN",
    "BOOLEAN": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMPTZ",
}


def bigquery_column_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type holding what BigQuery would store for an Arrow/Parquet column."""
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    return "VARCHAR"


@dataclass
class Job:
    """What the client returns for a job: ``result()``, ``schema``, bytes, its config."""

    client: LocalBigQuery
    sql: str | None
    job_config: Any
    relation: str | None = None  # the local table or SQL holding the rows
    schema: list[bigquery.SchemaField] = field(default_factory=list)
    total_bytes_processed: int = 0
    job_id: str = ""

    def result(self, page_size: int | None = None, **_: Any) -> Rows:
        return Rows(self.client, self.relation, page_size)


@dataclass
class Rows:
    """The RowIterator part the engine uses: Arrow, whole or as record batches."""

    client: LocalBigQuery
    relation: str | None
    page_size: int | None

    def _table(self) -> pa.Table:
        if self.relation is None:
            return pa.table({})
        return self.client.con.sql(f"SELECT * FROM {self.relation}").to_arrow_table()

    def to_arrow(self, create_bqstorage_client: bool = True, **_: Any) -> pa.Table:
        return self._table()

    def to_arrow_iterable(self, bqstorage_client: Any = None, **_: Any):  # type: ignore[no-untyped-def]
        yield from self._table().to_batches(max_chunksize=self.page_size)


class LocalBigQuery:
    """``google.cloud.bigquery.Client``'s methods the engine calls, answered by DuckDB."""

    def __init__(self, project: str = "test-project", dry_run_bytes_per_row: int = 8) -> None:
        self.project = project
        self.con = duckdb.connect()
        self._run("SET TimeZone = 'UTC'")
        self.jobs: list[tuple[str, Any]] = []  # (kind or SQL, job config) in call order
        self.tables: dict[str, bigquery.Table] = {}
        self.deleted: list[str] = []
        self.partitioning: dict[str, bigquery.TimePartitioning] = {}  # set by tests
        self.dry_run_bytes_per_row = dry_run_bytes_per_row
        self._attached: set[str] = set()

    def _run(self, statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(statement, params).fetchall()

    # --- names ------------------------------------------------------------------------

    def _ref(self, table: Any) -> bigquery.TableReference:
        if isinstance(table, bigquery.Table):
            return table.reference
        if isinstance(table, bigquery.TableReference):
            return table
        return bigquery.TableReference.from_string(str(table), default_project=self.project)

    def _local(self, table: Any, create: bool = False) -> str:
        ref = self._ref(table)
        if create and ref.project not in self._attached:
            self._run(f"ATTACH ':memory:' AS \"{ref.project}\"")
            self._attached.add(ref.project)
        if create:
            self._run(f'CREATE SCHEMA IF NOT EXISTS "{ref.project}"."{ref.dataset_id}"')
        return f'"{ref.project}"."{ref.dataset_id}"."{ref.table_id}"'

    def _exists(self, table: Any) -> bool:
        ref = self._ref(table)
        if ref.project not in self._attached:
            return False
        found = self._run(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? "
            "AND table_name = ?",
            [ref.project, ref.dataset_id, ref.table_id],
        )
        return bool(found[0][0])

    def _schema(self, relation: str) -> list[bigquery.SchemaField]:
        described = self.con.sql(f"DESCRIBE SELECT * FROM {relation}").fetchall()
        return [bigquery.SchemaField(name, _TO_BIGQUERY.get(t, t)) for name, t, *_ in described]

    # --- test setup: a source table as BigQuery would hold it ---------------------------

    def load_parquet(self, table: str, paths: list[str]) -> None:
        """Create ``table`` from Parquet files, with BigQuery's column types (test setup)."""
        files = ", ".join(f"'{p}'" for p in paths)
        relation = f"read_parquet([{files}], union_by_name = true)"
        self._create_as(table, pq.read_schema(paths[0]), relation)

    def load_arrow(self, table: str, data: pa.Table) -> None:
        """Create ``table`` from an Arrow table, with BigQuery's column types (test setup)."""
        self.con.register("__arrow", data)
        try:
            self._create_as(table, data.schema, "__arrow")
        finally:
            self.con.unregister("__arrow")

    def _create_as(self, table: str, schema: pa.Schema, relation: str) -> None:
        columns = ", ".join(
            f'CAST("{f.name}" AS {bigquery_column_type(f.type)}) AS "{f.name}"' for f in schema
        )
        self._run(
            f"CREATE TABLE {self._local(table, create=True)} AS SELECT {columns} FROM {relation}"
        )

    # --- the client's methods -----------------------------------------------------------

    def query(self, query: str, job_config: Any = None, **_: Any) -> Job:
        sqlglot.parse_one(query, read="bigquery")  # BigQuery would reject what does not parse
        local = sqlglot.transpile(query, read="bigquery", write="duckdb")[0]
        self.jobs.append((query, job_config))
        try:
            return self._query(query, local, job_config)
        except (duckdb.BinderException, duckdb.CatalogException) as exc:
            # BigQuery answers a query naming an unknown column or table with a 400.
            raise api.BadRequest(str(exc).splitlines()[0]) from None

    def _query(self, query: str, local: str, job_config: Any) -> Job:
        job = Job(self, query, job_config, job_id=f"job_{len(self.jobs)}")
        if job_config is not None and job_config.dry_run:
            job.schema = self._schema(f"({local})")
            rows = self._run(f"SELECT count(*) FROM ({local})")[0][0]
            job.total_bytes_processed = rows * self.dry_run_bytes_per_row + len(query)
            return job
        destination = getattr(job_config, "destination", None)
        if destination is not None:
            if self._exists(destination):
                raise api.Conflict(f"Already Exists: Table {destination}")
            target = self._local(destination, create=True)
            self._run(f"CREATE TABLE {target} AS {local}")
            job.relation = target
        else:
            job.relation = f"({local})"
        job.schema = self._schema(job.relation)
        return job

    def create_table(self, table: bigquery.Table, exists_ok: bool = False, **_: Any) -> Any:
        if self._exists(table):
            raise api.Conflict(f"Already Exists: Table {table.reference}")
        columns = ", ".join(f'"{f.name}" {_TO_DUCKDB[f.field_type]}' for f in table.schema)
        self._run(f"CREATE TABLE {self._local(table, create=True)} ({columns})")
        self.tables[str(table.reference)] = table
        return table

    def load_table_from_file(
        self, file_obj: Any, destination: Any, job_config: Any = None, **_: Any
    ) -> Job:
        self.jobs.append(("load", job_config))
        if not self._exists(destination):
            raise api.NotFound(f"Not found: Table {destination}")
        data = pq.read_table(io.BytesIO(file_obj.read()))
        declared = [f.name for f in job_config.schema]
        if data.column_names != declared:
            raise api.BadRequest(f"Parquet columns {data.column_names} != schema {declared}")
        self.con.register("__upload", data)
        try:
            self._run(f"INSERT INTO {self._local(destination)} SELECT * FROM __upload")
        finally:
            self.con.unregister("__upload")
        return Job(self, None, job_config)

    def get_table(self, table: Any, **_: Any) -> bigquery.Table:
        if not self._exists(table):
            raise api.NotFound(f"Not found: Table {table}")
        found = bigquery.Table(self._ref(table), schema=self._schema(self._local(table)))
        found.time_partitioning = self.partitioning.get(str(self._ref(table)))
        found._properties["numRows"] = str(
            self._run(f"SELECT count(*) FROM {self._local(table)}")[0][0]
        )
        return found

    def update_table(self, table: bigquery.Table, fields: list[str], **_: Any) -> Any:
        if not self._exists(table):
            raise api.NotFound(f"Not found: Table {table.reference}")
        self.jobs.append(("update_table", (str(table.reference), list(fields), table.expires)))
        self.tables[str(table.reference)] = table
        return table

    def delete_table(self, table: Any, not_found_ok: bool = False, **_: Any) -> None:
        if not self._exists(table):
            if not_found_ok:
                return
            raise api.NotFound(f"Not found: Table {table}")
        self._run(f"DROP TABLE {self._local(table)}")
        self.deleted.append(str(self._ref(table)))

    # --- assertions -----------------------------------------------------------------------

    def queries(self) -> list[tuple[str, bigquery.QueryJobConfig]]:
        """The SQL jobs run (not loads or metadata calls), with their configurations."""
        return [(q, c) for q, c in self.jobs if isinstance(c, bigquery.QueryJobConfig)]


# --- a scenario of tests/strategies.py as a repo on "BigQuery" -------------------------------

BIGQUERY_YAML = (
    "project: props\nregistry: data/registry.json\n"
    "offline_store: {type: bigquery, project: test-project, dataset: ds}\n"
)


def build_bigquery_repo(scenario: Any, path: Any, client: LocalBigQuery) -> Any:
    """``strategies.build_repo`` with BigQuerySource views: the same Parquet files, loaded
    into ``test-project.ds.<view>``, applied with the schema read through ``client``."""
    from featurestore import BigQuerySource, Entity, FeatureStore, FeatureView, Field
    from featurestore.config import load_config
    from featurestore.offline.bigquery.schema import schema_reader
    from featurestore.registry import Registry
    from featurestore.repo import RepoContents
    from featurestore.types import dtype_by_name
    from tests.strategies import ENTITY_KEYS, write_view_files

    path.mkdir(parents=True, exist_ok=True)
    (path / "featurestore.yaml").write_text(BIGQUERY_YAML)
    entities = {name: Entity(name=name, join_keys=keys) for name, keys in ENTITY_KEYS.items()}
    contents = RepoContents(entities=entities)
    for case in scenario.views:
        folder = path / "data" / case.ref.name
        write_view_files(case, folder)
        table = f"test-project.ds.{case.ref.name}"
        client.load_parquet(table, [str(p) for p in sorted(folder.glob("*.parquet"))])
        contents.views[case.ref.name] = FeatureView(
            name=case.ref.name,
            entities=[entities[case.entity]],
            schema=[Field(name=f, dtype=dtype_by_name(d)) for f, d in case.dtypes.items()],
            source=BigQuerySource(
                table=table,
                timestamp_field="event_ts",
                created_timestamp_column="created_ts" if case.ref.has_created else None,
            ),
            ttl=case.ref.ttl,
        )
    config = load_config(path)
    registry = Registry(config.registry_path, config.project, schema_reader(config, client))
    registry.apply(contents, path)
    return FeatureStore(path, bigquery_client=client)


# --- the network itself: a tiny BigQuery REST endpoint on 127.0.0.1 ----------------------


class BigQueryHTTP:
    """Answers the two REST calls a real ``bigquery.Client`` makes for ``apply`` and
    ``training-set --dry-run``: ``tables.get`` (from ``tables``: name -> [(column, type)])
    and ``jobs.insert`` of a dry-run query (``totalBytesProcessed`` = ``dry_run_bytes``).
    Every request is recorded (method, path, JSON body). Anything else answers 501.
    Use as a context manager; ``endpoint`` is its http://127.0.0.1:PORT URL.
    """

    def __init__(self, tables: dict[str, list[tuple[str, str]]], dry_run_bytes: int) -> None:
        self.tables = tables
        self.dry_run_bytes = dry_run_bytes
        self.requests: list[tuple[str, str, Any]] = []

    def __enter__(self) -> BigQueryHTTP:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                fake.requests.append(("GET", path, None))
                parts = path.strip("/").split("/")  # bigquery/v2/projects/P/datasets/D/tables/T
                if len(parts) == 8 and parts[2] == "projects" and parts[6] == "tables":
                    name = f"{parts[3]}.{parts[5]}.{parts[7]}"
                    if name not in fake.tables:
                        self._answer(
                            404, {"error": {"code": 404, "message": f"Not found: Table {name}"}}
                        )
                        return
                    fields = [
                        {"name": n, "type": t, "mode": "NULLABLE"} for n, t in fake.tables[name]
                    ]
                    ref = {"projectId": parts[3], "datasetId": parts[5], "tableId": parts[7]}
                    self._answer(200, {"tableReference": ref, "schema": {"fields": fields}})
                    return
                self._answer(501, {"error": {"code": 501, "message": "not in this fake"}})

            def do_POST(self) -> None:
                path = self.path.split("?")[0]
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append(("POST", path, body))
                if path.endswith("/jobs") and body.get("configuration", {}).get("dryRun"):
                    stats = {"totalBytesProcessed": str(fake.dry_run_bytes)}
                    self._answer(
                        200,
                        {
                            "jobReference": body["jobReference"],
                            "configuration": body["configuration"],
                            "status": {"state": "DONE"},
                            "statistics": {**stats, "query": stats},
                        },
                    )
                    return
                self._answer(501, {"error": {"code": 501, "message": "not in this fake"}})

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
