"""The one entity reader (featurestore/offline/entities.py): every input a user can give
``get_historical_features`` (and so ``training-set``, ``train`` and ``predict-batch``) either
reads as the same rows or is a one-line ``RetrievalError`` naming the problem."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore, RetrievalError
from tests.reference import RefView, SourceRow
from tests.strategies import Scenario, ViewCase, build_repo, minute

REFS = ["users:clicks", "merchants:category"]
UTC_US = pa.timestamp("us", tz="UTC")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """users (Int64 key user_id) and merchants (String key merchant, values like "012")."""
    users = ViewCase(
        RefView(
            "users",
            ["user_id"],
            None,
            ["clicks"],
            [[SourceRow({"user_id": 1}, minute(0), None, {"clicks": 10})]],
        ),
        "user",
        {"clicks": "Int64"},
        int32_keys=False,
        timestamp_unit="us",
        naive_timestamps=False,
    )
    merchants = ViewCase(
        RefView(
            "merchants",
            ["merchant"],
            None,
            ["category"],
            [[SourceRow({"merchant": "012"}, minute(0), None, {"category": "food"})]],
        ),
        "merchant",
        {"category": "String"},
        int32_keys=False,
        timestamp_unit="us",
        naive_timestamps=False,
    )
    root = tmp_path_factory.mktemp("entities")
    return build_repo(Scenario([users, merchants], [], "event", False), root)


def _expected() -> list[dict[str, Any]]:
    return [
        {"user_id": 1, "merchant": "012", "clicks": 10, "category": "food"},
        {"user_id": 2, "merchant": "12", "clicks": None, "category": None},
    ]


def _values(table: pa.Table) -> list[dict[str, Any]]:
    return table.select(["user_id", "merchant", "clicks", "category"]).to_pylist()


def _arrow() -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([1, 2], pa.int64()),
            "merchant": ["012", "12"],
            "event_timestamp": pa.array([minute(1), minute(2)], UTC_US),
        }
    )


def test_a_csv_file_reads_keys_with_their_declared_types(
    store: FeatureStore, tmp_path: Path
) -> None:
    """CSV inference would read merchant '012' as the integer 12: keys follow the views."""
    path = tmp_path / "entities.csv"
    path.write_text(
        "user_id,merchant,event_timestamp,note\n"
        "1,012,2024-01-01T00:01:00Z,a\n"
        "2,12,2024-01-01 00:02:00,b\n"  # naive: UTC
    )
    got = store.get_historical_features(str(path), REFS).to_arrow()
    assert _values(got) == _expected()
    assert got["event_timestamp"].to_pylist() == [minute(1), minute(2)]
    assert got["note"].to_pylist() == ["a", "b"]
    assert got == store.get_historical_features(path, REFS).to_arrow()  # a Path too


def test_a_folder_of_parquet_files_reads_in_path_order(store: FeatureStore, tmp_path: Path) -> None:
    folder = tmp_path / "rows"
    (folder / "sub").mkdir(parents=True)
    table = _arrow()
    pq.write_table(table.slice(1), folder / "sub" / "b.parquet")
    pq.write_table(table.slice(0, 1), folder / "a.parquet")
    (folder / "_SUCCESS").write_text("")
    got = store.get_historical_features(folder, REFS).to_arrow()
    assert _values(got) == _expected()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("rows", None, "folder .* holds no .parquet file"),
        ("rows.parquet", b"not parquet", "cannot read .* as Parquet"),
        ("rows.csv", b"a,b\n1,2,3\n", "cannot read .* as CSV"),
        ("gone.parquet", "absent", "no file or folder at"),
    ],
    ids=["empty folder", "not parquet", "broken csv", "missing"],
)
def test_unreadable_inputs_are_one_line_errors(
    store: FeatureStore, tmp_path: Path, name: str, content: Any, message: str
) -> None:
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(RetrievalError, match=message):
        store.get_historical_features(str(path), REFS)


def test_a_folder_whose_files_disagree_is_refused_naming_them(
    store: FeatureStore, tmp_path: Path
) -> None:
    pq.write_table(_arrow(), tmp_path / "a.parquet")
    pq.write_table(_arrow().drop_columns(["merchant"]), tmp_path / "b.parquet")
    with pytest.raises(
        RetrievalError,
        match=r"b.parquet has columns \(user_id int64, event_timestamp timestamp\[us, tz=UTC\]\) "
        r"but .*a.parquet has \(user_id int64, merchant string, ",
    ):
        store.get_historical_features(tmp_path, REFS)


def test_duplicate_column_names_are_refused(store: FeatureStore, tmp_path: Path) -> None:
    frame = pd.DataFrame([[1, "012", minute(1), minute(1)]])
    frame.columns = ["user_id", "merchant", "event_timestamp", "event_timestamp"]
    with pytest.raises(RetrievalError, match=r"duplicate column names \['event_timestamp'\]"):
        store.get_historical_features(frame, REFS)
    doubled = _arrow().append_column("user_id", pa.array([3, 4]))
    with pytest.raises(RetrievalError, match=r"duplicate column names \['user_id'\]"):
        store.get_historical_features(doubled, REFS)
    csv = tmp_path / "doubled.csv"
    csv.write_text("user_id,merchant,merchant,event_timestamp\n1,012,1,2024-01-01\n")
    with pytest.raises(RetrievalError, match=r"duplicate column names \['merchant'\]"):
        store.get_historical_features(csv, REFS)


def test_an_object_column_mixing_types_is_refused_naming_it(store: FeatureStore) -> None:
    frame = pd.DataFrame(
        {"user_id": [1, "2"], "merchant": ["012", "12"], "event_timestamp": [minute(1)] * 2}
    )
    with pytest.raises(RetrievalError, match=r"column 'user_id' mixes value types \(int, str\)"):
        store.get_historical_features(frame, REFS)


def test_unsigned_64_bit_keys_are_refused_by_the_plan(store: FeatureStore) -> None:
    """types.py decides: uint64 cannot be read losslessly as Int64 (values >= 2**63)."""
    huge = _arrow().set_column(0, "user_id", pa.array([1, 2**63], pa.uint64()))
    with pytest.raises(
        RetrievalError, match=r"join key 'user_id' is Int64 but entity_df holds uint64"
    ):
        store.get_historical_features(huge, REFS)
    small = _arrow().set_column(0, "user_id", pa.array([1, 2], pa.uint32()))
    assert _values(store.get_historical_features(small, REFS).to_arrow()) == _expected()


@pytest.mark.parametrize(
    ("column", "row", "shown"),
    [
        (pa.array([minute(1), datetime(1500, 1, 1)], pa.timestamp("us")), 1, "1500-01-01"),
        (pa.array([date(2024, 1, 1), date(3000, 1, 1)], pa.date32()), 1, "3000-01-01"),
        (pa.array(["1200-05-01T00:00:00Z", "2024-01-01"]), 0, "1200-05-01"),
        (pa.array([minute(1), datetime(2262, 4, 12)], pa.timestamp("ms", "UTC")), 1, "2262-04-12"),
    ],
    ids=["timestamp", "date", "string", "milliseconds"],
)
def test_entity_times_outside_the_accepted_range_name_the_row(
    store: FeatureStore, column: pa.Array, row: int, shown: str
) -> None:
    table = _arrow().set_column(2, "event_timestamp", column)
    with pytest.raises(RetrievalError, match=rf"row {row} holds {shown}.*outside the accepted"):
        store.get_historical_features(table, REFS)


def test_entity_sql_runs_on_duckdb_and_its_errors_are_one_line(
    store: FeatureStore, tmp_path: Path
) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(_arrow(), path)
    got = store.get_historical_features(f"SELECT * FROM read_parquet('{path}')", REFS)
    assert _values(got.to_arrow()) == _expected()
    for query, message in [
        ("SELEC user_id FROM t", 'Parser Error: syntax error at or near "SELEC"'),
        ("SELECT * FROM no_such_table", "Table with name no_such_table does not exist"),
    ]:
        with pytest.raises(RetrievalError) as info:
            store.get_historical_features(query, REFS)
        assert str(info.value).startswith("entity_df SQL failed: ") and message in str(info.value)
        assert "\n" not in str(info.value)


def test_entity_rows_at_a_source_rows_nanosecond_time_find_that_row(tmp_path: Path) -> None:
    """Defect: DuckDB rounds a source's nanosecond times to the nearest microsecond, the
    entity reader truncated them: a row whose ns part was 500 or more landed after an entity
    row taken from the same time, so the join missed the row at its own time (Feast, in ns,
    finds it). Entity times are rounded as DuckDB rounds them."""
    from tests.tiny_repo import write_repo

    base = pd.Timestamp("2026-01-01T00:00:00", tz="UTC").value
    parts = [0, 1, 499, 500, 501, 999, 999_500, 999_999_999, -1, -500, -501]
    times = pa.array([base + 1_000_000 * i + p for i, p in enumerate(parts)], pa.int64())
    times = times.cast(pa.timestamp("ns", tz="UTC"))
    drivers = list(range(len(parts)))
    source = pa.table(
        {"driver_id": pa.array(drivers, pa.int32()), "event_ts": times, "trips": drivers}
    )
    store = FeatureStore(
        write_repo(
            tmp_path / "repo",
            source,
            created=None,
            fields=[("trips", "Int64")],
            service_features=["trips"],
        )
    )
    store.apply()
    entities = pa.table({"driver_id": drivers, "event_timestamp": times})
    got = store.get_historical_features(entities, ["stats:trips"]).to_arrow()
    assert got["trips"].to_pylist() == drivers


def test_an_int32_key_beyond_its_range_is_refused_naming_the_row_as_online(
    tmp_path: Path,
) -> None:
    """Defect: an Int32 join key of 3000000000 gave nulls offline (no row matches) while the
    online read refused it as the wrong type; both now refuse it, naming the row."""
    from tests.tiny_repo import write_repo

    store = FeatureStore(write_repo(tmp_path))
    store.apply()
    at = datetime(2026, 1, 2, tzinfo=UTC)
    entity_df = pd.DataFrame({"driver_id": [1, 3_000_000_000], "event_timestamp": [at, at]})
    with pytest.raises(RetrievalError, match=r"join key 'driver_id' is Int32.*row 1.*3000000000"):
        store.get_historical_features(entity_df, ["stats:conv_rate"])
    with pytest.raises(RetrievalError, match=r"entity row 1: join key 'driver_id' is Int32"):
        store.get_online_features(["stats:conv_rate"], {"driver_id": [1, 3_000_000_000]}, now=at)
    ok = store.get_historical_features(entity_df.iloc[:1], ["stats:conv_rate"]).to_arrow()
    assert ok["conv_rate"].to_pylist() == [pytest.approx(0.3)]
    store.close()


def test_a_nanosecond_time_string_rounds_to_microseconds_like_a_timestamp_column() -> None:
    """Defect: an entity time given as an ISO string finer than a microsecond was truncated,
    the same time given as a timestamp column rounded to the nearest microsecond (as DuckDB
    reads the sources' times): one instant, two entity times, so the join could miss the
    source row at it. Strings now round by the same rule."""
    from featurestore.offline.entities import normalize_timestamps

    given = [
        "2026-01-01T00:00:00.0000005Z",
        "2026-01-01T00:00:00.0000015",
        "1999-12-31T23:59:59.9999996+00:00",
    ]
    as_strings = normalize_timestamps(pa.table({"event_timestamp": given}))
    as_times = normalize_timestamps(
        pa.table({"event_timestamp": pd.to_datetime(given, utc=True, format="ISO8601")})
    )
    assert as_strings["event_timestamp"].to_pylist() == as_times["event_timestamp"].to_pylist()
    assert as_strings["event_timestamp"][0].as_py().microsecond == 1
