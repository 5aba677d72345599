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
from featurestore.offline.bigquery import sql
from featurestore.offline.plan import (
    BigQuerySourcePlan,
    FeatureColumn,
    JoinPlan,
    KeyColumn,
    LatestPlan,
    ViewJoin,
)
from featurestore.types import MAX_TIME, MAX_TTL, MIN_TIME, Float32
from tests.offline.bigquery_local import LocalBigQuery, build_bigquery_repo
from tests.reference import RefView, SourceRow, point_in_time
from tests.strategies import Scenario, ViewCase, build_repo, minute

HOSTILE = "x`; DROP TABLE y; --"


def _view(ttl_us: int | None, created: str | None = "created") -> ViewJoin:
    return ViewJoin(
        name="stats",
        keys=(KeyColumn("user_id", Int64),),
        source=BigQuerySourcePlan("test-project.ds.stats", None, "ts", created),
        ttl_us=ttl_us,
        features=(FeatureColumn("rate", Float32, "rate"),),
        all_features=(("rate", Float32),),
        fingerprint="",
    )


def _render(view: ViewJoin, times: sql.TimeRange, as_of: str = "event") -> str:
    plan = JoinPlan((view,), ("user_id", "event_timestamp"), as_of, False)  # type: ignore[arg-type]
    return sql.render_join(plan, sql.table_ref("test-project.ds.entities"), times)


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
    latest = sql.render_latest(LatestPlan(view, TIMES.latest))  # type: ignore[arg-type]
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


def test_the_longest_ttl_at_the_earliest_time_stays_in_bigquerys_range_without_a_guard() -> None:
    """Entity times lie in types' accepted range and a ttl is at most MAX_TTL, so
    ``t - ttl`` (about year 1093 at the extreme) never leaves BigQuery's TIMESTAMP range
    (years 1-9999): a plain TIMESTAMP_SUB and a literal scan bound, no guard."""
    longest = MAX_TTL // timedelta(microseconds=1)
    text = _render(_view(longest), sql.TimeRange(MIN_TIME, MAX_TIME))
    sqlglot.parse_one(text, read="bigquery")
    assert f"s.__fs_event_ts >= TIMESTAMP_SUB(e.__fs_t, INTERVAL {longest} MICROSECOND)" in text
    assert "IF(e.__fs_t" not in text
    earliest = MIN_TIME - MAX_TTL
    assert earliest.year > 1000
    assert f"`ts` >= {sql.timestamp_literal(earliest)}" in text


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
    from featurestore.training import plan_join

    projections, _ = store.state.resolve(refs)
    return plan_join(
        store.offline_engine(), store.state, _hostile_entities(), projections,
        full_feature_names=False, as_of="event", with_timestamps=False,
        repo_path=store.repo_path,
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


def test_the_longest_ttl_at_both_ends_of_the_time_range_runs_on_both_engines(
    tmp_path: Path,
) -> None:
    """The edge the removed overflow guards were for: entity times at types.MIN_TIME and
    MAX_TIME with a ttl of MAX_TTL (``t - ttl`` about year 1093) run on both engines and
    give the reference's values."""
    times = [MIN_TIME, minute(-(10**6) - 1), minute(-10), minute(5), MAX_TIME, None]
    rows = [{"user_id": 1, "event_timestamp": t} for t in times]
    entities = pa.table(
        {
            "user_id": pa.array([1] * len(times), pa.int64()),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )
    scenario = _ttl_scenario(MAX_TTL)
    client = LocalBigQuery()
    on_bigquery = build_bigquery_repo(scenario, tmp_path / "bq", client)
    on_duckdb = build_repo(scenario, tmp_path / "duckdb")
    expected = [r["v0_count"] for r in point_in_time(rows, [scenario.views[0].ref])]
    assert expected == [None, None, 5, 10, 10, None]
    for store in (on_bigquery, on_duckdb):
        got = store.get_historical_features(entities, ["v0:v0_count"]).to_arrow()
        assert got["v0_count"].to_pylist() == expected
    ((sql_text, _),) = client.queries()
    assert "TIMESTAMP_SUB" in sql_text and "IF(e.__fs_t" not in sql_text


def test_entity_times_outside_the_accepted_range_are_refused_on_both_engines(
    tmp_path: Path,
) -> None:
    scenario = _ttl_scenario(MAX_TTL)
    client = LocalBigQuery()
    on_bigquery = build_bigquery_repo(scenario, tmp_path / "bq", client)
    on_duckdb = build_repo(scenario, tmp_path / "duckdb")
    too_early = MIN_TIME - timedelta(microseconds=1)
    entities = pa.table(
        {
            "user_id": pa.array([1, 1], pa.int64()),
            "event_timestamp": pa.array([minute(0), too_early], pa.timestamp("us", tz="UTC")),
        }
    )
    for store in (on_bigquery, on_duckdb):
        with pytest.raises(RetrievalError, match=r"row 1 holds 1677-09-22.*outside the accepted"):
            store.get_historical_features(entities, ["v0:v0_count"])
    # An entity query's times are only known on BigQuery: checked there, before the join.
    client.load_arrow("test-project.ds.old", entities)
    job = on_bigquery.get_historical_features(
        "SELECT * FROM `test-project.ds.old`", ["v0:v0_count"]
    )
    with pytest.raises(RetrievalError, match="entity query's event_timestamp 1677-09-22"):
        job.to_arrow()
    assert not [q for q, _ in client.queries() if "QUALIFY" in q]  # the join never ran


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


def _case_twin_scenario() -> Scenario:
    def case(name: str, feature: str) -> ViewCase:
        rows = [
            SourceRow({"user_id": 1}, minute(0), minute(0), {feature: 10}),
            SourceRow({"user_id": 1}, minute(5), minute(5), {feature: 20}),
        ]
        return ViewCase(
            RefView(name, ["user_id"], None, [feature], [rows]),
            "user",
            {feature: "Int64"},
            int32_keys=False,
            timestamp_unit="us",
            naive_timestamps=False,
        )

    return Scenario([case("v0", "cnt"), case("v1", "CNT")], [], "event", False)


def test_outputs_differing_only_in_case_are_refused_alike_on_both_engines(
    tmp_path: Path,
) -> None:
    # BigQuery cannot return two columns equal but for case: the engine failed with a
    # KeyError traceback while DuckDB returned both; one rule (columns.check_unique) now
    # refuses the request on both engines, and online, before anything runs.
    scenario = _case_twin_scenario()
    client = LocalBigQuery()
    stores = [
        build_repo(scenario, tmp_path / "files"),
        build_bigquery_repo(scenario, tmp_path / "bigquery", client),
    ]
    entities = _hostile_entities().drop_columns([HOSTILE])
    twins = r"feature 'v0:cnt' and feature 'v1:CNT' .* 'cnt' and 'CNT', which differ only in case"
    for store in stores:
        with pytest.raises(RetrievalError, match=twins):
            store.get_historical_features(entities, ["v0:cnt", "v1:CNT"])
        got = store.get_historical_features(
            entities, ["v0:cnt", "v1:CNT"], full_feature_names=True
        ).to_arrow()
        assert got["v0__cnt"].to_pylist() == got["v1__CNT"].to_pylist() == [10, 20]
    with pytest.raises(RetrievalError, match=twins):
        stores[0].get_online_features(["v0:cnt", "v1:CNT"], [{"user_id": 1}])
    # An entity query's column and a feature: BigQuery's result would hold both.
    client.load_arrow("test-project.ds.twin", entities.append_column("CNT", pa.array([7, 8])))
    with pytest.raises(RetrievalError, match=r"entity_df column 'CNT' and feature 'v0:cnt'"):
        stores[1].get_historical_features("SELECT * FROM `test-project.ds.twin`", ["v0:cnt"])


def test_a_view_reading_columns_differing_only_in_case_is_refused_at_definition() -> None:
    # Whatever the source: a BigQuery source whose schema apply cannot read was accepted,
    # and its SQL read `cnt` for both fields (or failed on BigQuery's duplicate columns).
    from featurestore import FeatureView

    user = Entity(name="user", join_keys=["user_id"])
    source = BigQuerySource(table="p.d.t", timestamp_field="ts")
    for schema in (
        [Field(name="cnt", dtype=Int64), Field(name="CNT", dtype=Int64)],
        [Field(name="USER_ID", dtype=Int64)],
        [Field(name="TS", dtype=Int64)],
    ):
        with pytest.raises(DefinitionError, match="differ only in case"):
            FeatureView(name="v", entities=[user], schema=schema, source=source)
