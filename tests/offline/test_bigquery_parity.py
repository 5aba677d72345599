"""The BigQuery SQL, run on DuckDB through sqlglot, gives the DuckDB engine's results.

BigQuery cannot be reached from here. What is proven instead, on tests/strategies.py's
random messy data (ties, nulls, NaN, ttl edges, as_of="created", composite and int32 keys,
duplicates, row order): every query the BigQuery engine sends parses as BigQuery
(tests/offline/bigquery_local.py parses each one), and, transpiled to DuckDB and run on the
same Parquet data loaded with BigQuery's types, it returns the same values with the same
Arrow types (after the cast back to declared types) as the DuckDB engine: training sets
(entity rows uploaded, or given as a SQL query) and materialization's latest-per-key read;
and the parity theorem holds with BigQuery as the offline engine (materialized online
values equal the training set's, bit for bit).

One rule differs by necessity: a *complete* tie (same key, event and created time).
DuckDB picks the later row in the files; BigQuery tables have no row order, so the
BigQuery engine picks the greatest feature values (schema order). Every cell where the
engines differ must be such a tie, and the BigQuery result must equal the brute-force
reference run with that rule (the view's rows in one file sorted by their values, so the
reference's "later row wins" becomes "greater values win").
"""

from __future__ import annotations

import math
import struct
import tempfile
import warnings
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from featurestore.columns import CREATED_TS, EVENT_TS
from featurestore.offline.plan import plan_latest
from tests.offline.bigquery_local import LocalBigQuery, build_bigquery_repo
from tests.reference import RefView, SourceRow, latest, point_in_time, same_value, winner
from tests.strategies import Scenario, build_repo, entity_table, minute, scenarios

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _value_rank(value: Any) -> tuple[int, Any]:
    # BigQuery engine's order of one value: NULL lowest, then the value, NaN highest.
    if value is None:
        return (0, 0)
    if isinstance(value, float) and math.isnan(value):
        return (2, 0)
    return (1, value)


def by_values(view: RefView) -> RefView:
    """``view`` with its rows in one file sorted by feature values (schema order), so the
    reference's last tie-break (a later row wins) becomes BigQuery's (greater values win)."""
    rows = [row for rows in view.files for row in rows]
    rows.sort(key=lambda r: tuple(_value_rank(r.values.get(f)) for f in view.features))
    return replace(view, files=[rows])


def _rank(row: SourceRow | None) -> Any:
    return None if row is None else (row.event_ts, row.created_ts)


def _engines(scenario: Scenario, tmp: Path) -> tuple[Any, Any, LocalBigQuery]:
    client = LocalBigQuery()
    return (
        build_repo(scenario, tmp / "duckdb"),
        build_bigquery_repo(scenario, tmp / "bigquery", client),
        client,
    )


def _training_sets(scenario: Scenario, entity_df: Any) -> tuple[Any, Any, LocalBigQuery]:
    """The DuckDB engine's training set (for the entity table) and the BigQuery engine's."""
    refs = [f"{c.ref.name}:{f}" for c in scenario.views for f in c.ref.features]
    options = {
        "full_feature_names": scenario.full_feature_names,
        "as_of": scenario.as_of,
        "with_timestamps": scenario.with_timestamps,
    }
    with tempfile.TemporaryDirectory() as tmp:
        on_duckdb, on_bigquery, client = _engines(scenario, Path(tmp))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DuckDB's skipped-row counts, tested elsewhere
            expected = on_duckdb.get_historical_features(
                entity_table(scenario.entity_rows), refs, **options
            ).to_arrow()
        if entity_df is None:
            entity_df = entity_table(scenario.entity_rows)
        else:
            client.load_arrow("test-project.ds.entity_rows", entity_table(scenario.entity_rows))
        got = on_bigquery.get_historical_features(entity_df, refs, **options).to_arrow()
    return got, expected, client


@SETTINGS
@given(scenarios())
def test_bigquery_join_equals_duckdb_engine(scenario: Scenario) -> None:
    got, expected, client = _training_sets(scenario, None)
    assert any("QUALIFY ROW_NUMBER()" in sql for sql, _ in client.queries())
    assert got.schema == expected.schema  # values and, after the cast step, types
    views = [c.ref for c in scenario.views]
    options = {
        "full_feature_names": scenario.full_feature_names,
        "as_of": scenario.as_of,
        "with_timestamps": scenario.with_timestamps,
    }
    bigquery_rule = point_in_time(scenario.entity_rows, [by_values(v) for v in views], **options)
    view_of = {
        (f"{v.name}__{f}" if scenario.full_feature_names else f): v
        for v in views
        for f in v.features
    }
    rows = zip(got.to_pylist(), expected.to_pylist(), bigquery_rule, strict=True)
    for i, (g, e, b) in enumerate(rows):
        for column in e:
            assert same_value(g[column], b[column]), (i, column, g[column], b[column])
            if same_value(g[column], e[column]):
                continue
            # The engines may differ only where the winner is a complete tie (so never in
            # the winner's event and created times).
            assert column in view_of, (i, column, g[column], e[column])
            entity, view = scenario.entity_rows[i], view_of[column]
            t = entity["event_timestamp"]
            by_files = winner(view, entity, t, scenario.as_of)
            assert _rank(by_files) == _rank(winner(by_values(view), entity, t, scenario.as_of))


def _sortable(rows: list[dict[str, Any]], columns: list[str]) -> list[tuple[Any, ...]]:
    return sorted(tuple((type(row[c]).__name__, str(row[c])) for c in columns) for row in rows)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(scenarios())
def test_entity_sql_query_gives_the_uploaded_rows_result(scenario: Scenario) -> None:
    """Entity rows given as a BigQuery query: the same rows, columns and types.

    A query has no row order, so rows are compared as a multiset (duplicates kept).
    """
    query = "SELECT * FROM `test-project.ds.entity_rows`"
    got, expected, client = _training_sets(scenario, query)
    assert got.schema == expected.schema
    views = [by_values(c.ref) for c in scenario.views]
    options = {
        "full_feature_names": scenario.full_feature_names,
        "as_of": scenario.as_of,
        "with_timestamps": scenario.with_timestamps,
    }
    reference = point_in_time(scenario.entity_rows, views, **options)
    columns = got.column_names
    assert _sortable(got.to_pylist(), columns) == _sortable(reference, columns)
    numbered = [sql for sql, _ in client.queries() if "ROW_NUMBER() OVER ()" in sql]
    assert len(numbered) == 1 and query in numbered[0]


def _latest_rows(batches: Any, keys: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = [row for batch in batches for row in batch.to_pylist()]
    found = {tuple(row[k] for k in keys): row for row in rows}
    assert len(found) == len(rows), "one row per entity key"
    return found


minutes = st.integers(-1, 16)


@SETTINGS
@given(scenarios(), minutes, st.none() | minutes, st.none() | minutes)
def test_bigquery_read_latest_equals_duckdb_engine(
    scenario: Scenario, end: int, start: int | None, created_after: int | None
) -> None:
    window: dict[str, datetime | None] = {
        "end": minute(end),
        "start": None if start is None else minute(start),
        "created_after": None if created_after is None else minute(created_after),
    }
    with tempfile.TemporaryDirectory() as tmp:
        on_duckdb, on_bigquery, _ = _engines(scenario, Path(tmp))
        for case in scenario.views:
            name, keys = case.ref.name, case.ref.join_keys
            d_plan, b_plan = (
                plan_latest(
                    s.state.view(name), s.state.key_dtypes(name), repo_path=s.repo_path, **window
                )
                for s in (on_duckdb, on_bigquery)
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected_batches = list(on_duckdb.offline_engine().read_latest(d_plan))
            got_batches = list(on_bigquery.offline_engine().read_latest(b_plan))
            features = [*case.ref.features, EVENT_TS, CREATED_TS]
            for batch in got_batches:  # keys are INT64 on BigQuery; the rest as declared
                assert batch.schema.remove(0) == expected_batches[0].schema.remove(0)
                assert batch.schema.names[len(keys) :] == features
            got, expected = _latest_rows(got_batches, keys), _latest_rows(expected_batches, keys)
            reference = latest(by_values(case.ref), **window)  # type: ignore[arg-type]
            by_files = latest(case.ref, **window)  # type: ignore[arg-type]
            assert got.keys() == expected.keys() == reference.keys()
            for key, row in got.items():
                for f in case.ref.features:
                    assert same_value(row[f], reference[key].values[f]), (key, f)
                assert _rank(reference[key]) == _rank(by_files[key])  # differ only on ties
                if all(same_value(row[f], expected[key][f]) for f in features):
                    continue
                assert row[EVENT_TS] == expected[key][EVENT_TS]


def _bits(value: Any) -> Any:
    # Floats compared by their IEEE bits (every NaN alike), as the parity theorem says.
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else struct.pack("<d", value)
    return value


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(-1, 14))
def test_materialized_from_bigquery_online_equals_offline(scenario: Scenario, at: int) -> None:
    """The parity theorem with BigQuery as the offline engine (SQLite online): once all rows
    with ``event_ts <= T`` are materialized, ``online(now=T) == training set at T``."""
    from featurestore import FeatureStore

    t = minute(at)
    with tempfile.TemporaryDirectory() as tmp:
        client = LocalBigQuery()
        build_bigquery_repo(scenario, Path(tmp), client)
        yaml = Path(tmp) / "featurestore.yaml"
        yaml.write_text(yaml.read_text() + "online_store: {type: sqlite, path: data/online.db}\n")
        store = FeatureStore(tmp, bigquery_client=client)
        store.materialize(minute(-10_000), t)
        assert any(c.labels["featurestore"] == "materialize" for _, c in client.queries())
        for case in scenario.views:
            keys = case.ref.join_keys
            winners = latest(by_values(case.ref), end=t)
            rows = [dict(zip(keys, key, strict=True)) for key in winners] or [
                {k: 99 if k == "user_id" else "absent" for k in keys}
            ]
            refs = [f"{case.ref.name}:{f}" for f in case.ref.features]
            online = store.get_online_features(features=refs, entity_rows=rows, now=t)
            entity_df = pa.table(
                {
                    **{k: [r[k] for r in rows] for k in keys},
                    "event_timestamp": pa.array([t] * len(rows), pa.timestamp("us", tz="UTC")),
                }
            )
            offline = store.get_historical_features(entity_df, refs).to_arrow()
            online_table = online.to_arrow()
            for feature in case.ref.features:
                assert online_table.schema.field(feature).type == offline.schema.field(feature).type
                on_values = online_table[feature].to_pylist()
                off_values = offline[feature].to_pylist()
                assert list(map(_bits, on_values)) == list(map(_bits, off_values)), feature
                for value, status in zip(off_values, online.statuses[feature], strict=True):
                    assert (value is None) == (status != "PRESENT"), (feature, value, status)
        store.close()
