"""The BigQuery SQL itself: it parses as BigQuery, quotes every identifier, prunes with
literals, and survives hostile names (on both engines)."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from featurestore import BigQuerySource, DefinitionError, Entity, Field, Int64
from featurestore.errors import RetrievalError
from featurestore.offline import bigquery_sql as sql
from featurestore.offline.plan import (
    BigQuerySourcePlan,
    FeatureColumn,
    JoinPlan,
    KeyColumn,
    ViewJoin,
)
from featurestore.types import Float32
from tests.offline.bigquery_local import LocalBigQuery, build_bigquery_repo
from tests.reference import RefView, SourceRow
from tests.strategies import Scenario, ViewCase, build_repo, minute

HOSTILE = "x`; DROP TABLE y; --"


def _view(ttl_us: int | None, created: str | None = "created") -> ViewJoin:
    return ViewJoin(
        name="stats",
        keys=(KeyColumn("user_id", Int64),),
        source=BigQuerySourcePlan("test-project.ds.stats", None, "ts", created),
        ttl_us=ttl_us,
        features=(FeatureColumn("rate", Float32, "rate"),),
        fingerprint="",
    )


def _render(view: ViewJoin, times: sql.TimeRange, as_of: str = "event") -> str:
    plan = JoinPlan((view,), ("user_id", "event_timestamp"), as_of, False)  # type: ignore[arg-type]
    columns = [sql.ViewColumns((("rate", Float32),))]
    return sql.render_join(plan, columns, sql.table_ref("test-project.ds.entities"), times)


DAY = timedelta(days=1) // timedelta(microseconds=1)
TIMES = sql.TimeRange(datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 5, tzinfo=UTC))


def test_the_join_parses_as_bigquery_and_keeps_its_structure() -> None:
    tree = sqlglot.parse_one(_render(_view(DAY), TIMES, "created"), read="bigquery")
    qualify = tree.find(exp.Qualify)
    assert qualify is not None and "ROW_NUMBER()" in qualify.sql("bigquery")
    assert "PARTITION BY e.__fs_row" in qualify.sql("bigquery")
    text = tree.sql("bigquery")
    assert "TIMESTAMP_SUB(e.__fs_t, INTERVAL '86400000000' MICROSECOND)" in text
    assert "s.__fs_created_ts IS NULL OR s.__fs_created_ts <= e.__fs_t" in text
    tables = {t.sql("bigquery") for t in tree.find_all(exp.Table)}
    assert "`test-project`.`ds`.`stats`" in tables


def test_every_qualify_sits_beside_a_where_as_bigquery_requires() -> None:
    view = _view(DAY)
    columns = sql.ViewColumns((("rate", Float32),))
    latest = sql.render_latest(view, columns, end=TIMES.latest, start=None, created_after=None)  # type: ignore[arg-type]
    for text in (_render(view, TIMES), latest):
        selects = [
            q for q in sqlglot.parse_one(text, read="bigquery").find_all(exp.Select)
            if q.args.get("qualify")
        ]  # fmt: skip
        assert selects
        for select in selects:
            assert any(select.args.get(k) for k in ("where", "group", "having"))


def test_the_source_scan_is_pruned_to_min_t_minus_ttl_and_max_t_as_literals() -> None:
    text = _render(_view(DAY), TIMES)
    assert "`ts` >= TIMESTAMP '2024-01-01 00:00:00.000000+00:00'" in text
    assert "`ts` <= TIMESTAMP '2024-01-05 00:00:00.000000+00:00'" in text
    no_ttl = _render(_view(None), TIMES)
    assert "`ts` >=" not in no_ttl and "`ts` <= TIMESTAMP '2024-01-05" in no_ttl
    nothing = _render(_view(DAY), sql.TimeRange(None, None))  # every entity time is null
    assert "AND FALSE" in nothing


def test_a_ttl_reaching_before_year_1_never_makes_timestamp_sub_overflow() -> None:
    since_year_1000 = (
        datetime(2024, 1, 2, tzinfo=UTC) - datetime(1000, 1, 1, tzinfo=UTC)
    ) // timedelta(microseconds=1)
    text = _render(_view(since_year_1000 * 2), TIMES)
    # No lower scan bound; rows whose t - ttl would fall before year 1 skip TIMESTAMP_SUB.
    assert "`ts` >=" not in text
    assert "IF(e.__fs_t < TIMESTAMP '" in text
    endless = _render(_view(10**18), TIMES)  # longer than BigQuery's whole range
    assert "TIMESTAMP_SUB" not in endless
    for text in (_render(_view(since_year_1000 * 2), TIMES), endless):
        sqlglot.parse_one(text, read="bigquery")


def test_identifiers_are_validated_and_backquoted() -> None:
    assert sql.quote("user_id") == "`user_id`"
    with pytest.raises(DefinitionError, match="not a valid name"):
        sql.quote(HOSTILE)
    with pytest.raises(RetrievalError, match="not of the form"):
        sql.table_ref("p.d.t`; DROP TABLE y")
    # Any name quoted with quote_any stays one identifier, whatever it holds.
    tree = sqlglot.parse_one(f"SELECT {sql.quote_any(HOSTILE)} FROM t", read="bigquery")
    assert [c.name for c in tree.find_all(exp.Column)] == [HOSTILE]
    assert len(list(tree.find_all(exp.Drop))) == 0


def test_a_hostile_feature_or_source_name_is_rejected_at_definition() -> None:
    with pytest.raises(DefinitionError):
        Field(name="x; DROP TABLE y", dtype=Int64)
    with pytest.raises(DefinitionError):
        BigQuerySource(table="p.d.t; DROP TABLE y", timestamp_field="ts")
    with pytest.raises(DefinitionError):
        BigQuerySource(table="p.d.t", timestamp_field="ts` OR 1=1 --")
    with pytest.raises(DefinitionError):
        Entity(name="user", join_keys=["id`; DROP TABLE y"])


def _one_view_scenario() -> Scenario:
    rows = [
        SourceRow({"user_id": 1}, minute(0), minute(0), {"v0_count": 10}),
        SourceRow({"user_id": 1}, minute(5), minute(5), {"v0_count": 20}),
    ]
    case = ViewCase(
        RefView("v0", ["user_id"], None, ["v0_count"], [rows]),
        "user",
        {"v0_count": "Int64"},
        int32_keys=False,
        timestamp_unit="us",
        naive_timestamps=False,
    )
    return Scenario([case], [], "event", False)


def _hostile_entities() -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([1, 1], pa.int64()),
            "event_timestamp": pa.array([minute(1), minute(6)], pa.timestamp("us", tz="UTC")),
            HOSTILE: ["a", "b"],
        }
    )


def _check_passthrough(table: pa.Table) -> None:
    assert table.column_names == ["user_id", "event_timestamp", HOSTILE, "v0_count"]
    assert table[HOSTILE].to_pylist() == ["a", "b"]
    assert table["v0_count"].to_pylist() == [10, 20]


def test_a_hostile_entity_column_passes_through_on_duckdb(tmp_path: Path) -> None:
    store = build_repo(_one_view_scenario(), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check_passthrough(
            store.get_historical_features(_hostile_entities(), ["v0:v0_count"]).to_arrow()
        )
    parquet = tmp_path / "entities.parquet"
    pq.write_table(_hostile_entities(), parquet)
    _check_passthrough(store.get_historical_features(str(parquet), ["v0:v0_count"]).to_arrow())


def test_a_hostile_entity_column_passes_through_on_bigquery(tmp_path: Path) -> None:
    client = LocalBigQuery()
    store = build_bigquery_repo(_one_view_scenario(), tmp_path, client)
    _check_passthrough(
        store.get_historical_features(_hostile_entities(), ["v0:v0_count"]).to_arrow()
    )
    # In an entity SQL query the name is the user's SQL; we never spell it (e.* EXCEPT).
    client.load_arrow("test-project.ds.hostile", _hostile_entities())
    query = "SELECT * FROM `test-project.ds.hostile`"
    got = store.get_historical_features(query, ["v0:v0_count"]).to_arrow()
    _check_passthrough(got.sort_by("event_timestamp"))
    assert client._exists("test-project.ds.v0") and client._exists("test-project.ds.hostile")


def _plan_for(store: Any, refs: list[str]) -> Any:
    from featurestore.offline.bigquery_join import plan_bigquery_join

    projections, _ = store.state.resolve(refs)
    return plan_bigquery_join(
        store.config, store.state, _hostile_entities(), projections,
        full_feature_names=False, as_of="event", client=store.bigquery_client,
    )  # fmt: skip


def test_a_file_source_view_is_refused_by_the_bigquery_engine(tmp_path: Path) -> None:
    scenario = _one_view_scenario()
    store = build_repo(scenario, tmp_path / "files")
    bq_store = build_bigquery_repo(scenario, tmp_path / "bq", LocalBigQuery())
    bq_store.registry.path.write_text(store.registry.path.read_text())  # Parquet views applied
    with pytest.raises(RetrievalError, match="feature view 'v0' reads Parquet files"):
        _plan_for(bq_store, ["v0:v0_count"])


def _ttl_scenario(ttl: timedelta | None) -> Scenario:
    rows = [
        SourceRow({"user_id": 1}, minute(0), None, {"v0_count": 10}),
        SourceRow({"user_id": 1}, minute(-(10**6)), None, {"v0_count": 5}),  # ~2 years earlier
    ]
    case = ViewCase(
        RefView("v0", ["user_id"], ttl, ["v0_count"], [rows]),
        "user",
        {"v0_count": "Int64"},
        int32_keys=False,
        timestamp_unit="us",
        naive_timestamps=False,
    )
    return Scenario([case], [], "event", False)


@pytest.mark.parametrize("years", [500])
def test_a_ttl_of_centuries_runs_and_bounds_nothing(tmp_path: Path, years: int) -> None:
    """A ttl of centuries (the maximum is about 584 years) renders a plain bound and runs."""
    entities = pa.table(
        {
            "user_id": pa.array([1, 1, 1, 1], pa.int64()),
            "event_timestamp": pa.array(
                [minute(-(10**6) - 1), minute(-10), minute(5), None], pa.timestamp("us", tz="UTC")
            ),
        }
    )
    client = LocalBigQuery()
    ttl = timedelta(days=365 * years)
    store = build_bigquery_repo(_ttl_scenario(ttl), tmp_path / "bq", client)
    got = store.get_historical_features(entities, ["v0:v0_count"]).to_arrow()
    assert got["v0_count"].to_pylist() == [None, 5, 10, None]  # the 2-year-old row counts
    ((sql_text, _),) = client.queries()
    assert "IF(e.__fs_t <" not in sql_text
    # Such a ttl bounds nothing here: the DuckDB engine without a ttl agrees.
    on_duckdb = build_repo(_ttl_scenario(None), tmp_path / "duckdb")
    expected = on_duckdb.get_historical_features(entities, ["v0:v0_count"]).to_arrow()
    assert got == expected


def test_no_entity_rows_give_an_empty_typed_training_set(tmp_path: Path) -> None:
    client = LocalBigQuery()
    store = build_bigquery_repo(_ttl_scenario(timedelta(minutes=5)), tmp_path, client)
    empty = pa.table(
        {
            "user_id": pa.array([], pa.int64()),
            "event_timestamp": pa.array([], pa.timestamp("us", tz="UTC")),
        }
    )
    got = store.get_historical_features(empty, ["v0:v0_count"]).to_arrow()
    assert got.num_rows == 0 and got.schema.field("v0_count").type == pa.int64()
    ((sql_text, _),) = client.queries()
    assert "AND FALSE" in sql_text  # nothing to scan
