"""What the BigQuery engine asks the client to do: real google-cloud-bigquery job
configurations, asserted as built, and temporary tables that expire and are cleaned up.

The client is tests/offline/bigquery_local.py's stand-in (BigQuery cannot be reached from
here); the configurations it receives are the real objects the real client would send.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from google.cloud import bigquery

from featurestore.columns import CREATED_TS, EVENT_TS
from featurestore.config import BigQueryConfig
from featurestore.errors import ConfigError, RetrievalError
from featurestore.offline.bigquery import jobs
from featurestore.offline.plan import plan_latest
from featurestore.types import Int64
from tests.offline.bigquery_local import LocalBigQuery, build_bigquery_repo
from tests.reference import RefView, SourceRow
from tests.strategies import Scenario, ViewCase, minute


def _scenario() -> Scenario:
    rows = [
        SourceRow({"user_id": 1}, minute(0), minute(0), {"v0_small": 7, "v0_rate": 0.5}),
        SourceRow({"user_id": 2}, minute(3), None, {"v0_small": -3, "v0_rate": float("nan")}),
    ]
    case = ViewCase(
        RefView("v0", ["user_id"], timedelta(minutes=5), ["v0_small", "v0_rate"], [rows]),
        "user",
        {"v0_small": "Int32", "v0_rate": "Float32"},
        int32_keys=True,
        timestamp_unit="us",
        naive_timestamps=False,
    )
    return Scenario([case], [], "event", False)


def _dry_run(store: Any, entity_df: Any, refs: list[str]) -> Any:
    """What ``training-set --dry-run`` asks of the engine."""
    from featurestore.training import plan_join

    projections, _ = store.state.resolve(refs)
    engine = store.offline_engine()
    plan, entities = plan_join(
        engine, store.state, entity_df, projections, full_feature_names=False,
        as_of="event", with_timestamps=False, repo_path=store.repo_path,
    )  # fmt: skip
    return engine.dry_run(plan, entities)


def _store(tmp_path: Path, client: LocalBigQuery, extra: str = ""):  # type: ignore[no-untyped-def]
    store = build_bigquery_repo(_scenario(), tmp_path, client)
    if extra:
        yaml = tmp_path / "featurestore.yaml"
        yaml.write_text(yaml.read_text().replace("dataset: ds", f"dataset: ds, {extra}"))
        from featurestore import FeatureStore

        store = FeatureStore(tmp_path, bigquery_client=client)
    return store


ENTITIES = pa.table(
    {
        "user_id": pa.array([2, 1, 1], pa.int32()),
        "event_timestamp": pa.array(
            [minute(4), minute(1), minute(9)], pa.timestamp("us", tz="UTC")
        ),
    }
)


def test_a_training_set_uploads_numbered_rows_and_writes_an_expiring_result(tmp_path: Path) -> None:
    client = LocalBigQuery()
    store = _store(tmp_path, client, "maximum_bytes_billed: 5000000, labels: {team: risk}")
    started = datetime.now(UTC)
    table = store.get_historical_features(ENTITIES, ["v0:v0_small", "v0:v0_rate"]).to_arrow()

    # Values in the caller's order, BigQuery's INT64/FLOAT64 cast back to the declared types.
    assert table["v0_small"].to_pylist() == [-3, 7, None]
    assert table.schema.field("v0_small").type == pa.int32()
    assert table.schema.field("v0_rate").type == pa.float32()
    assert table["v0_rate"][1].as_py() == 0.5 and str(table["v0_rate"][0]) == "nan"

    loads = [c for kind, c in client.jobs if kind == "load"]
    assert len(loads) == 1
    load = loads[0]
    assert isinstance(load, bigquery.LoadJobConfig)
    assert load.source_format == bigquery.SourceFormat.PARQUET
    assert load.write_disposition == bigquery.WriteDisposition.WRITE_APPEND
    assert [(f.name, f.field_type, f.mode) for f in load.schema] == [
        ("__fs_row", "INT64", "REQUIRED"),
        ("user_id", "INT64", "NULLABLE"),
        ("__fs_t", "TIMESTAMP", "NULLABLE"),
    ]

    ((sql, config),) = client.queries()
    assert "QUALIFY ROW_NUMBER()" in sql
    assert isinstance(config, bigquery.QueryJobConfig)
    assert config.dry_run is False and config.use_query_cache is False
    assert config.use_legacy_sql is False
    assert config.maximum_bytes_billed == 5_000_000
    assert config.write_disposition == bigquery.WriteDisposition.WRITE_EMPTY
    assert config.destination.project == "test-project" and config.destination.dataset_id == "ds"
    assert config.destination.table_id.startswith("featurestore_training_")
    assert config.labels == {
        "featurestore": "training_set",
        "featurestore_project": "props",
        "team": "risk",
    }

    # The entity table was created with an expiration before any row was loaded; the
    # result table got one as soon as it existed; both are deleted once read.
    (entity_table,) = [t for name, t in client.tables.items() if "featurestore_entities_" in name]
    assert (
        started + timedelta(minutes=59)
        < entity_table.expires
        <= datetime.now(UTC) + timedelta(minutes=60)
    )
    updates = [c for kind, c in client.jobs if kind == "update_table"]
    assert [(name, fields) for name, fields, _ in updates] == [
        (str(config.destination), ["expires"])
    ]
    assert sorted(client.deleted) == sorted([str(entity_table.reference), str(config.destination)])


def test_maximum_bytes_billed_is_left_unset_unless_configured(tmp_path: Path) -> None:
    client = LocalBigQuery()
    _store(tmp_path, client).get_historical_features(ENTITIES, ["v0:v0_small"]).to_arrow()
    ((_, config),) = client.queries()
    assert config.maximum_bytes_billed is None
    assert config.labels == {"featurestore": "training_set", "featurestore_project": "props"}


def test_an_entity_query_is_numbered_once_into_an_expiring_table(tmp_path: Path) -> None:
    client = LocalBigQuery()
    store = _store(tmp_path, client)
    client.load_arrow("test-project.ds.people", ENTITIES)
    query = "SELECT * FROM `test-project.ds.people`"
    table = store.get_historical_features(query, ["v0:v0_small"]).to_arrow()
    assert sorted(table["v0_small"].to_pylist(), key=str) == sorted([-3, 7, None], key=str)
    schema, numbering, time_range, _ = client.queries()
    assert schema[1].dry_run is True and schema[0] == query  # its columns, for the plan
    kinds = [c.labels["featurestore"] for _, c in client.queries()[1:]]
    assert kinds == ["entity_rows", "entity_time_range", "training_set"]
    assert query in numbering[0] and "ROW_NUMBER() OVER ()" in numbering[0]
    assert numbering[1].destination.table_id.startswith("featurestore_entities_")
    assert time_range[1].destination is None  # a one-row answer
    updated = [c[0] for kind, c in client.jobs if kind == "update_table"]
    assert str(numbering[1].destination) in updated
    assert str(numbering[1].destination) in client.deleted


def test_read_latest_streams_from_an_expiring_result_deleted_when_done(tmp_path: Path) -> None:
    client = LocalBigQuery()
    store = _store(tmp_path, client)
    plan = plan_latest(
        store.state.view("v0"), store.state.key_dtypes("v0"), repo_path=tmp_path, end=minute(10)
    )
    engine = store.offline_engine()
    batches = list(engine.read_latest(plan, batch_rows=1))
    assert [b.num_rows for b in batches] == [1, 1]  # pages of batch_rows
    ((_, config),) = client.queries()
    assert config.labels["featurestore"] == "materialize"
    assert str(config.destination) in client.deleted
    schema = batches[0].schema
    assert [(f.name, f.type) for f in schema] == [
        ("user_id", pa.int64()),
        ("v0_small", pa.int32()),
        ("v0_rate", pa.float32()),
        (EVENT_TS, pa.timestamp("us", tz="UTC")),
        (CREATED_TS, pa.timestamp("us", tz="UTC")),
    ]
    # A consumer that stops early still leaves no result table behind.
    stream = engine.read_latest(plan, batch_rows=1)
    next(stream)
    stream.close()
    ((_, config),) = client.queries()[1:]
    assert str(config.destination) in client.deleted


def test_a_value_outside_the_declared_type_is_an_error_naming_the_column() -> None:
    table = pa.table({"clicks": pa.array([1, 2**40], pa.int64())})
    with pytest.raises(RetrievalError, match="column 'clicks' came back from BigQuery as int64"):
        jobs.cast_columns(table, {"clicks": pa.int32()}, "training set")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"project": "Bad_Project"}, "not a project id"),
        ({"dataset": "ds; drop"}, "must be letters, digits, underscores"),
        ({"labels": {"Team": "x"}}, "label 'Team'"),
        ({"temp_table_expiration_minutes": 0}, "positive integer"),
        ({"api_endpoint": "127.0.0.1:9050"}, "http(s) URL"),
    ],
)
def test_bigquery_settings_are_validated(settings: dict, message: str) -> None:
    base = {"project": "test-project", "dataset": "ds"}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BigQueryConfig(**{**base, **settings})


def test_the_dry_run_says_whether_the_time_bounds_prune_partitions(tmp_path: Path) -> None:
    client = LocalBigQuery()
    store = _store(tmp_path, client)

    def notes() -> list[str]:
        found = _dry_run(store, ENTITIES, ["v0:v0_small"])
        assert found.sql in [q for q, _ in client.queries()]
        return [n for n in found.notes if n.startswith("view v0")]

    table = "test-project.ds.v0"
    assert notes() == [
        f"view v0: table {table} is not time-partitioned: every row of the columns read is scanned"
    ]
    client.partitioning[table] = bigquery.TimePartitioning(field="event_ts")
    assert notes() == [
        f"view v0: table {table} is partitioned on event_ts: the time bounds prune it"
    ]
    client.partitioning[table] = bigquery.TimePartitioning()  # ingestion time
    assert notes() == [
        f"view v0: table {table} is partitioned on ingestion time, not on event_ts: not pruned"
    ]
    assert not client.deleted and not [k for k, _ in client.jobs if k == "load"]  # ran nothing


def test_a_query_source_is_checked_by_a_dry_run_and_joins_like_its_table(tmp_path: Path) -> None:
    from featurestore import BigQuerySource, FeatureStore, FeatureView, SchemaMismatchError
    from featurestore.offline.bigquery.schema import schema_reader
    from featurestore.registry import Registry
    from featurestore.repo import RepoContents

    client = LocalBigQuery()
    store = _store(tmp_path, client)
    table_view = store.state.view("v0")

    def apply(query: str) -> FeatureStore:
        view = FeatureView(
            name="v0",
            entities=table_view.entities,
            schema=table_view.schema,
            source=BigQuerySource(query=query, timestamp_field="event_ts"),
            ttl=table_view.ttl,
        )
        contents = RepoContents(entities={"user": table_view.entities[0]}, views={"v0": view})
        registry = Registry(
            store.config.registry_path, "props", schema_reader(store.config, client)
        )
        registry.apply(contents, tmp_path)
        return FeatureStore(tmp_path, bigquery_client=client)

    expected = store.get_historical_features(ENTITIES, ["v0:v0_small"]).to_arrow()
    queried = apply("SELECT user_id, event_ts, v0_small, v0_rate FROM `test-project.ds.v0`")
    assert queried.state.key_dtypes("v0") == {"user_id": Int64}  # from the dry run's schema
    assert queried.get_historical_features(ENTITIES, ["v0:v0_small"]).to_arrow() == expected
    dry_runs = [c for _, c in client.queries() if c.dry_run]
    assert dry_runs, "the query's schema came from a dry run"
    with pytest.raises(SchemaMismatchError, match="column 'v0_rate' is missing"):
        apply("SELECT user_id, event_ts, v0_small FROM `test-project.ds.v0`")
