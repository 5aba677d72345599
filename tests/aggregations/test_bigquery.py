"""Aggregated views on the BigQuery engine, proven as the join is: the BigQuery SQL (events of
the requested keys in the join's order, and materialization's tile events), parsed as
BigQuery and run on DuckDB through sqlglot (tests/offline/bigquery_local.py), gives the
DuckDB engine's training set bit for bit, and the parity theorem holds with BigQuery as the
offline engine. The data has no complete ties (same key, event and created time): BigQuery
orders those by value, DuckDB by file and row, which may change a float sum's last bit."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.aggregations.overflows import each_answered
from tests.aggregations.test_parity import bits, key_rows
from tests.offline.bigquery_local import BIGQUERY_YAML, LocalBigQuery
from tests.strategies import (
    ENTITY_KEYS,
    AggViewCase,
    agg_view_cases,
    build_agg_repo,
    minute,
    write_agg_files,
)

pytestmark = pytest.mark.filterwarnings("ignore::featurestore.errors.SkippedRowsWarning")
SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def without_complete_ties(case: AggViewCase) -> AggViewCase:
    seen = set()
    files = []
    for rows in case.ref.files:
        kept = []
        for row in rows:
            key = (tuple(sorted(row.keys.items())), row.event_ts, row.created_ts)
            if row.event_ts is not None and key in seen:
                continue
            seen.add(key)
            kept.append(row)
        files.append(kept)
    return replace(case, ref=replace(case.ref, files=files))


def bigquery_repo(case: AggViewCase, path: Path, client: LocalBigQuery, online: str = "") -> Any:
    from featurestore import BigQuerySource, Entity, FeatureStore, FeatureView, Field
    from featurestore.config import load_config
    from featurestore.offline.bigquery.schema import schema_reader
    from featurestore.registry import Registry
    from featurestore.repo import RepoContents
    from featurestore.types import dtype_by_name

    path.mkdir(parents=True, exist_ok=True)
    (path / "featurestore.yaml").write_text(BIGQUERY_YAML + online)
    entities = {name: Entity(name=name, join_keys=keys) for name, keys in ENTITY_KEYS.items()}
    folder = path / "data" / case.ref.name
    write_agg_files(case, folder)
    table = f"test-project.ds.{case.ref.name}"
    client.load_parquet(table, [str(p) for p in sorted(folder.glob("*.parquet"))])
    view = FeatureView(
        name=case.ref.name,
        entities=[entities[case.entity]],
        source=BigQuerySource(
            table=table,
            timestamp_field="event_ts",
            created_timestamp_column="created_ts" if case.ref.has_created else None,
        ),
        # declared: a BigQuery table holds only 64-bit numbers, which read as Int64 / Float64
        schema=[Field(name=c, dtype=dtype_by_name(d)) for c, d in case.dtypes.items()],
        aggregations=case.definitions(),
    )
    config = load_config(path)
    registry = Registry(config.registry_path, config.project, schema_reader(config, client))
    registry.apply(RepoContents(entities=entities, views={view.name: view}), path)
    return FeatureStore(path, bigquery_client=client)


@SETTINGS
@given(data=st.data(), entity=st.sampled_from(sorted(ENTITY_KEYS)), extreme=st.booleans())
def test_bigquery_training_sets_equal_duckdbs_bit_for_bit(
    data: st.DataObject, entity: str, extreme: bool
) -> None:
    case = without_complete_ties(data.draw(agg_view_cases("v0", entity, extreme=extreme)))
    rows = key_rows(case)
    t = [minute(data.draw(st.integers(0, 3 * 1440 + 10))) for _ in rows]
    columns = {
        k: pa.array([r[k] for r in rows], pa.int64() if k == "user_id" else pa.string())
        for k in case.ref.join_keys
    }
    entity_df = pa.table({**columns, "event_timestamp": pa.array(t, pa.timestamp("us", tz="UTC"))})
    with tempfile.TemporaryDirectory() as tmp:
        on_duckdb = build_agg_repo([case], Path(tmp) / "duckdb")
        client = LocalBigQuery()
        on_bigquery = bigquery_repo(case, Path(tmp) / "bigquery", client)
        refs = [f"v0:{a.name}" for a in on_duckdb.state.view("v0").aggregations]
        expected = each_answered(
            lambda r: on_duckdb.get_historical_features(entity_df, r).to_arrow(), refs
        )
        got = each_answered(
            lambda r: on_bigquery.get_historical_features(entity_df, r).to_arrow(), refs
        )
    assert any("featurestore/aggregations" in sql for sql, _ in client.queries())
    for ref in refs:
        mine, theirs = got[ref], expected[ref]
        if mine is None or theirs is None:  # an Int64 sum overflowing on both engines
            assert mine is theirs, ref
            continue
        name = ref.split(":")[1]
        assert mine.schema.field(name) == theirs.schema.field(name)
        assert [bits(v) for v in mine[name].to_pylist()] == [
            bits(v) for v in theirs[name].to_pylist()
        ], name


@SETTINGS
@given(case=agg_view_cases("v0", "user", extreme=True), end=st.integers(60, 3 * 1440))
def test_parity_with_bigquery_as_the_offline_engine(case: AggViewCase, end: int) -> None:
    from tests.aggregations.test_parity import check_parity

    case = without_complete_ties(case)
    with tempfile.TemporaryDirectory() as tmp:
        store = bigquery_repo(
            case, Path(tmp), LocalBigQuery(), "online_store: {type: sqlite, path: data/online.db}\n"
        )
        store.materialize_incremental(minute(end - 600))
        store.materialize_incremental(minute(end))
        check_parity(store, case, minute(end))
        store.close()
