"""Time edges at the CLI and library boundary: one accepted range (types.py), refused where a
time enters, and a store an older version left with an out-of-range watermark still works."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tiny_repo import source_table, write_repo

from featurestore import FeatureStore
from featurestore.online.base import ViewIdentity, Watermark, open_online_store
from featurestore.types import MAX_TIME
from tests.cli import run_cli

FAR_FUTURE = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def cli(*args: str) -> tuple[int, str]:
    """Exit status and all the command wrote (stdout, then stderr)."""
    result = run_cli(*args)
    return result.returncode, result.stdout + result.stderr


def test_materialize_over_all_time_is_one_clear_line(tmp_path: Path) -> None:
    repo = str(write_repo(tmp_path))
    assert cli("apply", "--repo", repo)[0] == 0
    code, out = cli("materialize", "0001-01-01", "9999-12-31T23:59:59.999999", "--repo", repo)
    assert code == 1 and out.count("\n") == 1
    assert "materialize: start 0001-01-01T00:00:00+00:00 is outside the accepted time range" in out
    code, out = cli("materialize-incremental", "9999-12-31", "--repo", repo)
    assert code == 1 and out.count("\n") == 1 and "end 9999-12-31" in out
    # an end after now: one line saying why (rows served before they happen; a watermark
    # that never moves back would make later incremental runs skip everything before it)
    code, out = cli("materialize", "1677-09-22T00:12:44", MAX_TIME.isoformat(), "--repo", repo)
    assert code == 1 and out.count("\n") == 1, out
    assert "is after the current time" in out
    # the widest accepted window works, and incremental runs keep working after it
    code, out = cli("materialize", "1677-09-22T00:12:44", "now", "--repo", repo)
    assert code == 0, out
    assert cli("materialize-incremental", "now", "--repo", repo)[0] == 0


def test_a_ttl_beyond_the_maximum_is_refused_at_apply_in_one_line(tmp_path: Path) -> None:
    repo = str(write_repo(tmp_path, ttl="timedelta.max"))
    code, out = cli("apply", "--repo", repo)
    assert code == 1 and out.count("\n") == 1
    assert "'stats': ttl" in out and "longer than the maximum" in out


def test_an_out_of_range_watermark_left_by_an_older_version_is_read_as_everything(
    tmp_path: Path,
) -> None:
    """Defect: a watermark at 9999-12-31T23:59:59.999999 (which an older version accepted)
    made every materialize-incremental fail with OverflowError, forever."""
    repo = write_repo(tmp_path)
    store = FeatureStore(repo)
    store.apply()
    store.materialize(datetime(2026, 1, 1), datetime(2026, 1, 2))
    with open_online_store(store.config) as online:
        created = online.get_watermark("stats").max_created  # type: ignore[union-attr]
        claim = online.claim(ViewIdentity.of(store.state.view_record("stats")))
        online.set_watermark(claim, Watermark(FAR_FUTURE, created))

    # A late row (created after everything written) is still picked up: driver 1 at hour 3.
    ts = pa.timestamp("us", tz="UTC")
    late = source_table().slice(0, 1)
    for column, value in [
        ("event_ts", pa.array([datetime(2026, 1, 1, 3, tzinfo=UTC)], ts)),
        ("created_ts", pa.array([datetime(2026, 1, 5, tzinfo=UTC)], ts)),
        ("trips", pa.array([99])),
    ]:
        late = late.set_column(late.schema.get_field_index(column), column, value)
    original = pq.read_table(repo / "data" / "stats.parquet")
    pq.write_table(pa.concat_tables([original, late]), repo / "data" / "stats.parquet")

    code, out = cli("materialize-incremental", "2026-01-06", "--repo", str(repo))
    assert code == 0, out
    response = store.get_online_features(
        ["stats:trips"], [{"driver_id": 1}], now=datetime(2026, 1, 1, 4, tzinfo=UTC)
    )
    assert response.to_dict()["trips"] == [99]
    report = store.materialize_incremental(datetime(2026, 1, 7))
    assert report.runs[0].window.start == MAX_TIME + timedelta(microseconds=1)
    assert report.runs[0].watermark.end == MAX_TIME  # repaired into the accepted range
    with open_online_store(store.config) as online:
        assert online.get_watermark("stats").end == MAX_TIME  # type: ignore[union-attr]
