"""A source file cut short or replaced while a run reads it: a clear error naming the view and
the file, nothing returned, nothing written online, no watermark moved.

The engine reads a view's files twice: ``check_files`` opens each footer, then DuckDB's query
reads them. The file is cut short between the two through a real hook in that sequence: the
``SkippedRowsWarning`` the engine emits after checking the files (the source holds a row
with a null key), shown through ``warnings.showwarning``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore, MaterializationError, RetrievalError
from featurestore.online.base import open_online_store
from tests.tiny_repo import source_table, write_repo

pytestmark = pytest.mark.filterwarnings("ignore::featurestore.errors.SkippedRowsWarning")

ENTITIES = pd.DataFrame(
    {
        "driver_id": pd.array([1, 2], "Int32"),
        "event_timestamp": [datetime(2026, 1, 2, tzinfo=UTC)] * 2,
    }
)


def _repo(tmp_path: Path) -> FeatureStore:
    table = source_table()
    with_null_key = table.set_column(0, "driver_id", pa.array([1, 2, 1, None], pa.int32()))
    store = FeatureStore(write_repo(tmp_path, with_null_key))
    store.apply()
    return store


def _cut_short(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@contextmanager
def cut_short_after_the_check(path: Path) -> Iterator[None]:
    """Cut ``path`` short when the engine warns of skipped rows: after it checked the files,
    before its query reads them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda *args, **kwargs: _cut_short(path)
        yield


def _online(store: FeatureStore) -> dict[str, list[object]]:
    return store.get_online_features(
        ["stats:conv_rate", "stats:trips"],
        [{"driver_id": 1}, {"driver_id": 2}],
        now=datetime(2026, 1, 1, 3, tzinfo=UTC),
    ).to_dict()


def test_materialize_of_a_file_cut_short_under_the_read_names_it_and_changes_nothing(
    tmp_path: Path,
) -> None:
    store = _repo(tmp_path)
    source = tmp_path / "data" / "stats.parquet"
    store.materialize(datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC))
    with open_online_store(store.config) as online:
        before_mark = online.get_watermark("stats")
    before = _online(store)
    assert before["trips"] == [1, 2]

    with cut_short_after_the_check(source), pytest.raises(MaterializationError) as failed:
        store.materialize_incremental(datetime(2026, 1, 1, 5, tzinfo=UTC))

    message = str(failed.value)
    assert "'stats'" in message and str(source) in message
    assert "Traceback" not in message and "\n" not in message
    with open_online_store(store.config) as online:
        assert online.get_watermark("stats") == before_mark
    assert _online(store) == before


def test_training_set_of_a_file_cut_short_under_the_read_names_it(tmp_path: Path) -> None:
    store = _repo(tmp_path)
    source = tmp_path / "data" / "stats.parquet"
    job = store.get_historical_features(ENTITIES, features=["stats:conv_rate"])

    with cut_short_after_the_check(source), pytest.raises(RetrievalError) as failed:
        job.to_df()

    assert "feature view 'stats'" in str(failed.value) and str(source) in str(failed.value)


def test_a_file_cut_short_before_the_job_is_planned_names_it(tmp_path: Path) -> None:
    store = _repo(tmp_path)
    source = tmp_path / "data" / "stats.parquet"
    _cut_short(source)

    with pytest.raises(RetrievalError) as failed:
        store.get_historical_features(ENTITIES, features=["stats:conv_rate"])

    assert "feature view 'stats'" in str(failed.value) and str(source) in str(failed.value)


LATER_FILES = {
    # (the column, its first file's values, a later file's values of a wider type)
    "a float64 file after a float32 one": (
        "conv_rate",
        pa.array([0.5, 0.25], pa.float32()),
        pa.array([0.1, 0.2], pa.float64()),
    ),
    "an int32 file after an int16 one": (
        "trips",
        pa.array([1, 2], pa.int16()),
        pa.array([100_000, -100_000], pa.int32()),
    ),
}


@pytest.mark.parametrize("case", sorted(LATER_FILES))
def test_a_later_file_of_a_wider_type_is_read_exactly_on_both_paths(
    tmp_path: Path, case: str
) -> None:
    # DuckDB read every file with the first file's types: 0.1 became 0.10000000149 offline
    # and online alike, and 100000 failed the read of an int16-first folder.
    column, first, later = LATER_FILES[case]
    table = source_table()
    index = table.schema.get_field_index(column)
    fields = [("conv_rate", "Float64"), ("trips", "Int32" if column == "trips" else "Int64")]
    store = FeatureStore(write_repo(tmp_path, path="data/parts", fields=fields))
    (tmp_path / "data" / "parts").mkdir()
    pq.write_table(
        table.slice(0, 2).set_column(index, column, first), tmp_path / "data/parts/a.parquet"
    )
    store.apply()
    pq.write_table(
        table.slice(2, 2).set_column(index, column, later), tmp_path / "data/parts/b.parquet"
    )

    entity_df = ENTITIES.assign(event_timestamp=datetime(2026, 1, 1, 3, tzinfo=UTC))
    offline = store.get_historical_features(entity_df, [f"stats:{column}"]).to_arrow()
    assert offline[column].to_pylist() == later.to_pylist()
    store.materialize(datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, 3, tzinfo=UTC))
    online = store.get_online_features(
        [f"stats:{column}"],
        [{"driver_id": 1}, {"driver_id": 2}],
        now=datetime(2026, 1, 1, 3, tzinfo=UTC),
    )
    assert online.to_dict()[column] == later.to_pylist()


def test_a_timestamp_file_after_a_date_one_keeps_its_time_of_day(tmp_path: Path) -> None:
    table = source_table()
    index = table.schema.get_field_index("event_ts")
    store = FeatureStore(write_repo(tmp_path, path="data/parts"))
    (tmp_path / "data" / "parts").mkdir()
    days = pa.array([datetime(2026, 1, 1).date()] * 2, pa.date32())
    pq.write_table(
        table.slice(0, 2).set_column(index, "event_ts", days), tmp_path / "data/parts/a.parquet"
    )
    store.apply()
    pq.write_table(table.slice(2, 2), tmp_path / "data/parts/b.parquet")  # 02:00 and 03:00

    entity_df = ENTITIES.assign(event_timestamp=datetime(2026, 1, 1, 1, tzinfo=UTC))
    got = store.get_historical_features(entity_df, ["stats:trips"]).to_arrow()
    assert got["trips"].to_pylist() == [1, 2]  # the later rows are not known at 01:00
