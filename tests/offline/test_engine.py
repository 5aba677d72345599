"""The offline engine seam (featurestore/offline/engine.py): the configured engine and no
other, both engines behind one interface, and sources that changed after ``apply``."""

from __future__ import annotations

import json
import warnings
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import (
    ConfigError,
    FeatureStore,
    MaterializationError,
    OfflineStoreUnavailable,
    RetrievalError,
    SchemaMismatchError,
)
from featurestore.config import load_config
from featurestore.manifest import TrainingSetManifest
from featurestore.offline.bigquery import BigQueryEngine
from featurestore.offline.duckdb import DuckDBEngine
from featurestore.offline.engine import OfflineEngine, open_offline_engine
from featurestore.offline.plan import plan_latest
from tests.offline.bigquery_local import LocalBigQuery, build_bigquery_repo
from tests.reference import RefView, SourceRow
from tests.strategies import Scenario, ViewCase, build_repo, minute

ENTITIES = pa.table(
    {
        "user_id": pa.array([1, 2], pa.int64()),
        "event_timestamp": pa.array([minute(5), minute(5)], pa.timestamp("us", tz="UTC")),
    }
)


def _scenario() -> Scenario:
    rows = [
        SourceRow({"user_id": 1}, minute(0), minute(0), {"v0_count": 10, "v0_amount": 1.5}),
        SourceRow({"user_id": 2}, minute(1), minute(1), {"v0_count": 20, "v0_amount": 2.5}),
    ]
    case = ViewCase(
        RefView("v0", ["user_id"], timedelta(minutes=10), ["v0_count", "v0_amount"], [rows]),
        "user",
        {"v0_count": "Int64", "v0_amount": "Float64"},
        int32_keys=False,
        timestamp_unit="us",
        naive_timestamps=False,
    )
    return Scenario([case], [], "event", False)


def test_the_configured_engine_is_opened_and_no_other(tmp_path: Path) -> None:
    on_duckdb = build_repo(_scenario(), tmp_path / "duckdb")
    client = LocalBigQuery()
    on_bigquery = build_bigquery_repo(_scenario(), tmp_path / "bq", client)
    assert isinstance(on_duckdb.offline_engine(), DuckDBEngine)
    engine = on_bigquery.offline_engine()
    assert isinstance(engine, BigQueryEngine) and engine.client is client
    assert isinstance(engine, OfflineEngine)
    with pytest.raises(ConfigError, match=r"a BigQuery client was given but .* duckdb"):
        open_offline_engine(load_config(tmp_path / "duckdb"), bigquery_client=client)
    # Both engines answer the same question alike, through the one interface.
    refs = ["v0:v0_count", "v0:v0_amount"]
    assert (
        on_duckdb.get_historical_features(ENTITIES, refs).to_arrow()
        == on_bigquery.get_historical_features(ENTITIES, refs).to_arrow()
    )


def test_a_bigquery_repo_without_credentials_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = build_bigquery_repo(_scenario(), tmp_path, LocalBigQuery())
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("HOME", str(tmp_path))
    no_client = FeatureStore(tmp_path)  # opens its client from the configuration
    with pytest.raises(OfflineStoreUnavailable, match="gcloud auth application-default login"):
        no_client.get_historical_features(ENTITIES, ["v0:v0_count"])
    assert store.get_historical_features(ENTITIES, ["v0:v0_count"]).to_arrow().num_rows == 2


def _rewrite_source(store: FeatureStore, change: str) -> Path:
    (path,) = sorted((store.repo_path / "data" / "v0").glob("*.parquet"))
    table = pq.read_table(path)
    if change == "drop":
        table = table.drop_columns(["v0_amount"])
    else:
        table = table.set_column(
            table.column_names.index("v0_amount"), "v0_amount", pa.array(["a", "b"])
        )
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    ("change", "found"),
    [("drop", "declared column 'v0_amount' is missing"), ("retype", "the source holds string")],
)
def test_a_source_changed_after_apply_names_the_view_column_and_file(
    tmp_path: Path, change: str, found: str
) -> None:
    """Was a DuckDB BinderException (or a ConversionException) from deep in the join."""
    store = build_repo(_scenario(), tmp_path)
    path = _rewrite_source(store, change)
    with pytest.raises(SchemaMismatchError) as info:
        store.get_historical_features(ENTITIES, ["v0:v0_count", "v0:v0_amount"]).to_arrow()
    message = str(info.value)
    assert f"feature view 'v0' (source file {path})" in message and found in message
    assert "re-run `featurestore apply`" in message and "\n" not in message
    # Materialization reads the same files through the same check.
    yaml = tmp_path / "featurestore.yaml"
    yaml.write_text(yaml.read_text() + "online_store: {type: sqlite, path: data/online.db}\n")
    with pytest.raises(MaterializationError, match=found):
        FeatureStore(tmp_path).materialize(minute(0), minute(9))
    # A feature the request does not read may go: only what the plan reads is checked.
    if change == "drop":
        got = store.get_historical_features(ENTITIES, ["v0:v0_count"]).to_arrow()
        assert got["v0_count"].to_pylist() == [10, 20]


def test_a_bigquery_source_changed_after_apply_says_to_re_run_apply(tmp_path: Path) -> None:
    client = LocalBigQuery()
    store = build_bigquery_repo(_scenario(), tmp_path, client)
    client.con.execute('ALTER TABLE "test-project"."ds"."v0" DROP COLUMN v0_amount')
    job = store.get_historical_features(ENTITIES, ["v0:v0_count"])
    with pytest.raises(RetrievalError, match=r"BigQuery rejected the training set query: .*re-run"):
        job.to_arrow()
    plan = plan_latest(
        store.state.view("v0"), store.state.key_dtypes("v0"), repo_path=tmp_path, end=minute(9)
    )
    with pytest.raises(RetrievalError, match="BigQuery rejected the materialization query"):
        list(store.offline_engine().read_latest(plan))


def test_the_manifest_round_trips_and_refuses_an_unknown_version(tmp_path: Path) -> None:
    store = build_repo(_scenario(), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = store.get_historical_features(ENTITIES, feature_service="everything")
        manifest = job.manifest
    data = json.loads(json.dumps(manifest.to_json()))
    assert TrainingSetManifest.from_json(data) == manifest
    assert manifest.feature_service is not None and manifest.feature_service.name == "everything"
    with pytest.raises(RetrievalError, match="schema_version 2 is not 1"):
        TrainingSetManifest.from_json({**data, "schema_version": 2})
    with pytest.raises(RetrievalError, match="manifest is malformed"):
        TrainingSetManifest.from_json({k: v for k, v in data.items() if k != "features"})
