"""`featurestore training-set` on a small repo, in-process (tests/cli.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.cli import Result, run_cli
from tests.reference import RefView, SourceRow
from tests.strategies import Scenario, ViewCase, build_repo, entity_table, minute


def _repo(path: Path) -> Path:
    rows = [
        SourceRow({"user_id": 1}, minute(0), minute(0), {"clicks": 10}),
        SourceRow({"user_id": 2}, minute(5), minute(5), {"clicks": 20}),
    ]
    view = ViewCase(
        RefView("user_stats", ["user_id"], timedelta(minutes=3), ["clicks"], [rows]),
        "user",
        {"clicks": "Int64"},
        int32_keys=False,
        timestamp_unit="us",
        naive_timestamps=True,
    )
    build_repo(Scenario([view], [], "event", False), path)
    return path


def _run(*args: str) -> Result:
    return run_cli("training-set", *args)


def test_training_set_writes_parquet_manifest_and_summary(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    rows = [
        {"user_id": u, "merchant": "", "region": "", "event_timestamp": minute(t), "extra": e}
        for u, t, e in [(1, 1, 1), (2, 6, 0), (1, 9, 1)]
    ]
    pq.write_table(entity_table(rows), tmp_path / "entities.parquet")
    out = tmp_path / "out" / "train.parquet"
    done = _run(
        "--repo", str(repo), "--features", "user_stats:clicks",
        "--entities", str(tmp_path / "entities.parquet"), "--out", str(out),
        "--full-feature-names", "--label", "extra",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    assert table["user_stats__clicks"].to_pylist() == [10, 20, None]
    assert table.schema.field("user_stats__clicks").type == pa.int64()
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["row_count"] == 3 and manifest["full_feature_names"] is True
    assert "3 rows x 6 columns" in done.stdout
    assert "Label extra: 0 1 (33.3%), 1 2 (66.7%)" in done.stdout
    assert "user_stats__clicks" in done.stdout and "33.3%" in done.stdout


def test_training_set_errors_are_one_line(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    pq.write_table(pa.table({"user": [1]}), tmp_path / "entities.parquet")
    base = ["--repo", str(repo), "--entities", str(tmp_path / "entities.parquet")]
    done = _run(*base, "--out", str(tmp_path / "t.parquet"), "--service", "everything")
    assert done.returncode == 1
    assert "error: entity_df has no 'event_timestamp' column" in done.stderr
    assert "Traceback" not in done.stderr
    both = _run(*base, "--out", "x.parquet", "--service", "everything", "--features", "a:b")
    assert both.returncode == 2 and "--service NAME or one or more --features" in both.stderr


def _entities(tmp_path: Path) -> Path:
    rows = [
        {"user_id": u, "merchant": "", "region": "", "event_timestamp": minute(t), "extra": e}
        for u, t, e in [(1, 1, 1), (2, 6, 0)]
    ]
    path = tmp_path / "entities.parquet"
    pq.write_table(entity_table(rows), path)
    return path


def test_an_unknown_label_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    out = tmp_path / "out" / "train.parquet"
    done = _run(
        "--repo", str(repo), "--features", "user_stats:clicks",
        "--entities", str(_entities(tmp_path)), "--out", str(out), "--label", "is_fraud",
    )  # fmt: skip
    assert done.returncode == 1
    assert "error: label column 'is_fraud' is not in the training set; it has" in done.stderr
    assert not out.exists() and not Path(f"{out}.manifest.json").exists()


def test_an_unwritable_out_is_refused_before_the_join(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "train.parquet"  # its folder would have to be a file
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")  # never read: the output is checked first
    base = ["--repo", str(repo), "--features", "user_stats:clicks", "--entities"]
    done = _run(*base, str(broken), "--out", str(out))
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot write the training set to {out}: ")
    assert len(done.stderr.strip().splitlines()) == 1
    folder = _run(*base, str(_entities(tmp_path)), "--out", str(tmp_path))
    assert folder.returncode == 2 and "is a directory" in folder.stderr


def test_an_out_the_run_reads_is_refused_before_the_join(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    entities = _entities(tmp_path)
    source = repo / "data" / "user_stats"
    files = {path: path.read_bytes() for path in sorted(source.rglob("*.parquet"))}
    base = ["--repo", str(repo), "--features", "user_stats:clicks", "--entities", str(entities)]
    for out, reader in [
        (next(iter(files)), "the source of feature view 'user_stats'"),  # its data, replaced
        (source / "train.parquet", "the source of feature view 'user_stats'"),  # added to it
        (entities, "the entity rows"),
    ]:
        done = _run(*base, "--out", str(out))
        assert done.returncode == 1, done.stdout
        assert done.stderr == (
            f"error: cannot write the training set to {out}: it is read as {reader}; "
            "choose another --out\n"
        )
    assert {path: path.read_bytes() for path in sorted(source.rglob("*.parquet"))} == files
    assert _run(*base, "--out", str(tmp_path / "train.parquet")).returncode == 0


def test_csv_and_folder_entities_give_the_parquet_result(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    parquet = _entities(tmp_path)
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(pq.read_table(parquet), folder / "part-0.parquet")
    csv = tmp_path / "entities.csv"
    pq.read_table(parquet).to_pandas().to_csv(csv, index=False)
    results = []
    for entities in (parquet, folder, csv):
        out = tmp_path / f"{entities.name}.out.parquet"
        done = _run(
            "--repo", str(repo), "--features", "user_stats:clicks",
            "--entities", str(entities), "--out", str(out),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        results.append(pq.read_table(out).select(["user_id", "clicks"]).to_pylist())
    assert (
        results[0]
        == results[1]
        == results[2]
        == [
            {"user_id": 1, "clicks": 10},
            {"user_id": 2, "clicks": 20},
        ]
    )


def test_dry_run_on_duckdb_says_it_is_for_bigquery(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    done = _run(
        "--repo", str(repo), "--features", "user_stats:clicks",
        "--entities", str(_entities(tmp_path)), "--dry-run",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: --dry-run estimates what BigQuery would scan")
