"""The feature log's writer and schema, in process: the columns and types the reports rely on,
partitions and file names, requests of different shapes in one flush, a full queue, and
``featurestore log show``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.feature_log import (
    PREDICT,
    FeatureLogWriter,
    LogHooks,
    ServedRequest,
    log_columns,
    log_files,
    read_log,
    summarize,
)
from featurestore.online.codec import timestamp_us
from featurestore.online.read import read_online
from tests.cli import run_cli
from tests.online.online_repo import T0, put, write_repo

UTC_US = pa.timestamp("us", tz="UTC")


@pytest.fixture
def fs(tmp_path: Path) -> FeatureStore:
    store = FeatureStore(write_repo(tmp_path / "repo", "{type: sqlite, path: data/online.db}"))
    store.apply()
    return store


def served(
    fs: FeatureStore, features: list[str], users: list[int], at: datetime, **kw
) -> ServedRequest:  # type: ignore[no-untyped-def]
    reader = fs._online_reader()
    plan, _ = reader.plan(features, False)
    response = read_online(reader.store, plan, {"user_id": users}, at)
    return ServedRequest(
        request_id=kw.pop("request_id", "r1"),
        request_us=timestamp_us(at),
        endpoint=kw.pop("endpoint", PREDICT),
        response=response,
        columns=log_columns(plan),
        **kw,
    )


def test_the_schema_is_the_documented_one(fs: FeatureStore, tmp_path: Path) -> None:
    online = fs._online_reader().store
    put(
        online,
        fs,
        "user_stats",
        [{"user_id": 1, "amount": 1.5, "count": 3, "city": "Oslo", "event_ts": T0}],
    )
    at = T0 + timedelta(minutes=1)
    request = served(
        fs,
        ["user_stats:amount", "user_stats:city"],
        [1, 2],
        at,
        model="m",
        model_fingerprint="f" * 64,
        model_sha256="s" * 64,
        service="svc",
        predictions=[0.25, 0.5],
    )
    writer = FeatureLogWriter(tmp_path / "log", flush_seconds=60)
    assert writer.submit(request)
    writer.close()
    (file,) = log_files(tmp_path / "log")
    assert file.parent.name == f"date={at:%Y-%m-%d}"
    assert (
        file.name.startswith("part-")
        and f"-{__import__('os').getpid()}-000001.parquet" in file.name
    )
    table = read_log(tmp_path / "log")
    assert table.schema.names == [
        "request_id", "request_ts", "endpoint", "model", "model_fingerprint", "model_sha256",
        "service", "definitions", "user_id",
        "user_stats__amount", "user_stats__amount__status", "user_stats__amount__event_ts",
        "user_stats__amount__created_ts",
        "user_stats__city", "user_stats__city__status", "user_stats__city__event_ts",
        "user_stats__city__created_ts",
        "prediction",
    ]  # fmt: skip
    types = {f.name: f.type for f in table.schema}
    assert types["request_ts"] == UTC_US and types["user_id"] == pa.int64()
    assert types["user_stats__amount"] == pa.float32() and types["user_stats__city"] == pa.string()
    assert types["user_stats__amount__event_ts"] == UTC_US
    assert types["prediction"] == pa.float64()
    assert table.schema.metadata[b"featurestore.feature_log.version"] == b"1"
    rows = table.to_pylist()
    assert [r["user_stats__amount"] for r in rows] == [1.5, None]
    assert [r["user_stats__amount__status"] for r in rows] == ["PRESENT", "NOT_FOUND"]
    assert (
        rows[0]["user_stats__amount__event_ts"] == T0
        and rows[1]["user_stats__city__event_ts"] is None
    )
    assert rows[0]["request_ts"] == at and rows[0]["prediction"] == 0.25
    assert rows[0]["user_stats__amount__created_ts"] is None  # put() writes no created time


def test_requests_of_different_shapes_share_one_file_per_flush(
    fs: FeatureStore, tmp_path: Path
) -> None:
    written: list[tuple[int, Path]] = []

    class Hooks(LogHooks):
        def written(self, rows: int, path: Path) -> None:
            written.append((rows, path))

    writer = FeatureLogWriter(tmp_path / "log", flush_seconds=60, hooks=Hooks())
    writer.submit(served(fs, ["user_stats:amount"], [1, 2, 3], T0, request_id="a"))
    writer.submit(
        served(fs, ["user_stats:city"], [4], T0, request_id="b", endpoint="/get-online-features")
    )
    writer.submit(served(fs, ["user_stats:amount"], [5], T0 + timedelta(days=1), request_id="c"))
    writer.close()
    assert [rows for rows, _ in written] == [4, 1]  # one file per date partition
    table = read_log(tmp_path / "log")
    assert table.num_rows == 5
    assert {"user_stats__amount", "user_stats__city"} <= set(table.schema.names)
    assert read_log(tmp_path / "log", since=T0 + timedelta(hours=1)).num_rows == 1
    assert read_log(tmp_path / "log", until=T0 + timedelta(hours=1)).num_rows == 4


def test_a_full_queue_drops_and_counts_without_blocking(fs: FeatureStore, tmp_path: Path) -> None:
    dropped: list[int] = []

    class Hooks(LogHooks):
        def dropped(self, rows: int) -> None:
            dropped.append(rows)

    writer = FeatureLogWriter(tmp_path / "log", queue_size=3, flush_seconds=60, hooks=Hooks())
    assert writer.submit(served(fs, ["user_stats:amount"], [1, 2], T0))
    assert not writer.submit(served(fs, ["user_stats:amount"], [1, 2], T0))
    assert writer.submit(served(fs, ["user_stats:amount"], [1], T0))
    writer.close()
    assert dropped == [2]
    assert read_log(tmp_path / "log").num_rows == 3


def test_log_show_summarizes(fs: FeatureStore, tmp_path: Path) -> None:
    log = fs.config.feature_log_path
    writer = FeatureLogWriter(log, flush_seconds=60)
    writer.submit(served(fs, ["user_stats:amount"], [1, 2], T0, model="fraud_v1", request_id="a"))
    writer.submit(served(fs, ["user_stats:amount"], [3], T0 + timedelta(hours=2), request_id="b"))
    writer.close()
    summary = summarize(log)
    assert (summary.rows, summary.requests, summary.files) == (3, 2, 1)
    assert summary.first == T0 and summary.last == T0 + timedelta(hours=2)
    assert summary.by_model == [("/predict", "-", 1), ("/predict", "fraud_v1", 2)]
    cli = ["log", "show", "--repo", str(fs.repo_path)]
    out = run_cli(*cli)
    assert out.returncode == 0, out.stderr
    assert "3 rows from 2 requests in 1 files" in out.stdout and "fraud_v1" in out.stdout
    out = run_cli(*cli, "--since", (T0 + timedelta(hours=1)).isoformat())
    assert out.returncode == 0 and "1 rows from 1 requests" in out.stdout, out.stderr
    empty = run_cli(*cli[:-1], str(tmp_path / "none"))
    assert empty.returncode == 1 and "featurestore.yaml" in empty.stderr


def test_naive_and_aware_since_agree(fs: FeatureStore) -> None:
    assert summarize(fs.config.feature_log_path, datetime(2000, 1, 1)).rows == 0
    assert summarize(fs.config.feature_log_path, datetime(2000, 1, 1, tzinfo=UTC)).rows == 0


def test_a_queued_response_is_out_of_the_collectors_walks_and_logs_the_same(
    fs: FeatureStore, tmp_path: Path
) -> None:
    """Responses wait in the queue until a flush (thousands under load): once queued, none of
    their columns is a container the garbage collector tracks, so a full collection does not
    walk them (before: ~46 lists per request, 20-50 ms pauses in /predict); the log holds the
    same rows as a response that was never frozen."""
    import gc

    online = fs._online_reader().store
    put(online, fs, "user_stats", [{"user_id": 1, "amount": 1.5, "city": "Oslo", "event_ts": T0}])
    at = T0 + timedelta(minutes=1)
    features = ["user_stats:amount", "user_stats:city"]
    request = served(fs, features, [1, 2], at, predictions=(0.25, 0.5))
    expected = served(fs, features, [1, 2], at, predictions=(0.25, 0.5)).response.to_dict(
        include_statuses=True, include_event_timestamps=True
    )
    writer = FeatureLogWriter(tmp_path / "log", flush_seconds=60)
    assert writer.submit(request)
    gc.collect()
    response = request.response
    columns = [
        *response.to_dict().values(),
        *response.statuses.values(),
        *response.event_us.values(),
    ]  # (created times are decoded on demand from the stored rows, held as tuples too)
    assert columns and not any(gc.is_tracked(c) for c in columns)
    got = response.to_dict(include_statuses=True, include_event_timestamps=True)
    assert {name: list(values) for name, values in got.items()} == expected
    writer.close()
    rows = read_log(tmp_path / "log").to_pylist()
    assert [r["user_stats__amount"] for r in rows] == [1.5, None]
    assert [r["user_stats__city__status"] for r in rows] == ["PRESENT", "NOT_FOUND"]


def test_a_join_key_named_like_a_log_column_is_refused_naming_it(tmp_path: Path) -> None:
    """Defect: a join key named ``model`` replaced the log's own ``model`` column in every row
    (the reports then filtered by the key's values); ``featurestore serve`` refuses such a
    model at start (``models.online.load_online_model`` calls ``log_columns``)."""
    from featurestore.errors import RetrievalError
    from tests.tiny_repo import source_table, write_repo

    table = source_table().rename_columns(
        ["model" if c == "driver_id" else c for c in source_table().column_names]
    )
    store = FeatureStore(write_repo(tmp_path / "repo", table, join_keys=["model"]))
    store.apply()
    plan, _ = store._online_reader().plan(["stats:trips"], False)
    with pytest.raises(
        RetrievalError, match=r"join key 'model': its column 'model' is also a column the log"
    ):
        log_columns(plan)
