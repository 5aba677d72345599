"""Bad input to the reports: each a clear message (one line from the CLI, exit status 1),
never a traceback: an empty log, a log from another fingerprint, a training set without its
manifest, a feature in the log the training set lacks, labels that match no request."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from class_repo import T0, build, served_request, write_log

from featurestore import FeatureStore
from featurestore.errors import ReportError
from featurestore.feature_log import PREDICT, log_table
from featurestore.reports import (
    Level,
    Window,
    consistency_report,
    performance_report,
    skew_report,
)

USERS = [1, 2, 3, 4, 6, 8, 12]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("bad"))


@pytest.fixture
def repo(built: Path, tmp_path: Path) -> Path:
    """A copy of the class repo without its log: each test writes the log it needs."""
    copy = tmp_path / "repo"
    shutil.copytree(built, copy)
    shutil.rmtree(copy / "data" / "feature_log")
    return copy


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featurestore.cli", *args], capture_output=True, text=True
    )


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _predict_log(repo: Path, fingerprint: str | None = None, name: str = "predict") -> None:
    store = FeatureStore(repo)
    fingerprint = fingerprint or store.state.service_record("svc").fingerprint
    request = served_request(
        store,
        USERS,
        endpoint=PREDICT,
        service="svc",
        model="m",
        model_fingerprint=fingerprint,
        model_sha256="a" * 64,
        predictions=[0.1 * i for i in range(len(USERS))],
    )
    store.close()
    write_log(repo, log_table([request]), name)


def _training_set(repo: Path, features: list[str] | str = "svc") -> Path:
    store = FeatureStore(repo)
    entities = pd.DataFrame({"user_id": USERS, "event_timestamp": T0})
    if isinstance(features, str):
        job = store.get_historical_features(entities, feature_service=features)
    else:
        job = store.get_historical_features(entities, features)
    return job.to_parquet(repo / "train.parquet")


def test_an_empty_log_says_so_and_where(repo: Path) -> None:
    _one_line_error(
        _cli("consistency-report", "--repo", str(repo)), "feature log", "is empty", "serve"
    )
    train = _training_set(repo)
    _one_line_error(
        _cli("skew-report", "--repo", str(repo), "--training-set", str(train)), "is empty"
    )


def test_an_empty_window_says_what_the_log_holds(repo: Path) -> None:
    _predict_log(repo)
    result = _cli("consistency-report", "--repo", str(repo), "--since", "2030-01-01")
    _one_line_error(result, "no rows from 2030-01-01", "7 rows run from 2025-01-10")


def _foreign_parquet() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"request_ts": ["yesterday"]}), sink)
    return bytes(sink.getvalue().to_pybytes())


@pytest.mark.parametrize(
    "content", [b"", b"not parquet", b"PAR1" + b"\0" * 20 + b"PAR1", _foreign_parquet()]
)
def test_a_damaged_log_file_is_named_not_a_traceback(repo: Path, content: bytes) -> None:
    """A truncated or foreign file among the log's (a crash mid-copy, a stray file): every
    command that reads the log says which file, in one line."""
    _predict_log(repo)
    damaged = next((repo / "data" / "feature_log").glob("date=*")) / "part-damaged.parquet"
    damaged.write_bytes(content)
    train = _training_set(repo)
    for command in (
        ["consistency-report", "--repo", str(repo)],
        ["skew-report", "--repo", str(repo), "--training-set", str(train)],
        ["log", "show", "--repo", str(repo)],
    ):
        _one_line_error(_cli(*command), str(damaged))


def test_served_text_is_printed_as_it_is_never_as_markup(repo: Path) -> None:
    """A served string (a category, a key) that looks like console markup or an emoji code
    is printed verbatim: it neither crashes the report (an unmatched closing tag) nor turns
    into something else."""
    store = FeatureStore(repo)
    table = log_table([served_request(store, USERS)])
    store.close()
    odd = pa.array(["[/oops] :label:"] * table.num_rows)
    table = table.set_column(table.schema.get_field_index("stats__s"), "stats__s", odd)
    write_log(repo, table, "odd")
    with open(repo / "featurestore.yaml", "a") as config:  # the examples shown are stats:s's
        config.write("reports: {exclude_features: ['stats:x', 'stats:n']}\n")
    result = _cli("consistency-report", "--repo", str(repo), "--examples", "1")
    assert result.returncode == 3, result.stderr  # the edited values: value-differs
    assert "Traceback" not in result.stderr
    assert "'[/oops] :label:'" in result.stdout.replace("\n", "")


def test_a_window_after_a_dtype_change_reads_only_its_own_files(repo: Path) -> None:
    """Files from before an apply that changed a feature's dtype (here n: String, then
    Int64) cannot be read with today's; a window after the apply must not need them, as
    the reports' advice ('pass --since after that apply') promises."""
    store = FeatureStore(repo)
    old = log_table([served_request(store, USERS, now=T0 - timedelta(days=1))])
    new = log_table([served_request(store, USERS)])
    store.close()
    n = old.schema.get_field_index("stats__n")
    write_log(repo, old.set_column(n, "stats__n", old["stats__n"].cast(pa.string())), "old")
    write_log(repo, new, "new")
    since = (T0 - timedelta(hours=1)).isoformat()
    result = _cli("consistency-report", "--repo", str(repo), "--since", since)
    assert result.returncode in (0, 3, 4), result.stderr
    assert f"{len(USERS)} rows" in result.stdout
    _one_line_error(_cli("consistency-report", "--repo", str(repo)), "stats__n")


def test_a_log_from_another_fingerprint_is_refused(repo: Path) -> None:
    _predict_log(repo, fingerprint="f" * 64)
    _one_line_error(
        _cli("consistency-report", "--repo", str(repo)),
        "model m bound to svc fingerprint ffffffffffff",
        "--since",
    )
    train = _training_set(repo)
    _one_line_error(
        _cli("skew-report", "--repo", str(repo), "--training-set", str(train)),
        "fingerprint ffffffffffff",
        "training set of the served model",
    )


def test_online_feature_rows_read_with_other_definitions_are_refused(repo: Path) -> None:
    """Defect: /get-online-features rows carry no model fingerprint, so after an apply the
    report replayed them through the new definitions (false mismatches); the log records the
    definitions each read used, and rows read with others are refused naming the view."""
    store = FeatureStore(repo)
    current = f"stats:{store.state.views['stats'].fingerprint[:12]}"
    request = served_request(store, USERS, definitions=current)
    store.close()
    write_log(repo, log_table([request]), "online")
    result = _cli("consistency-report", "--repo", str(repo))
    assert result.returncode in (0, 3, 4), result.stderr  # the same definitions: replayed
    store = FeatureStore(repo)
    old = served_request(store, USERS, definitions="stats:ffffffffffff")
    store.close()
    write_log(repo, log_table([old]), "before-apply")
    _one_line_error(
        _cli("consistency-report", "--repo", str(repo)),
        f"{len(USERS)} logged rows were read with definitions of 'stats'",
        "--since",
    )


def test_the_skew_report_leaves_out_rows_read_with_other_definitions_and_says_so(
    repo: Path,
) -> None:
    """Defect: the skew report compared rows read with an older definition of a view (the
    log's ``definitions``) with the training set of today's; they are now left out, as the
    consistency report refuses them (one rule, ``served.other_definitions``), with a note."""
    store = FeatureStore(repo)
    current = f"stats:{store.state.views['stats'].fingerprint[:12]}"
    write_log(repo, log_table([served_request(store, USERS, definitions=current)]), "now")
    old = served_request(store, USERS[:3], definitions="stats:ffffffffffff")
    write_log(repo, log_table([old]), "before-apply")
    store.close()
    train = _training_set(repo, ["stats:x", "stats:n", "stats:s"])
    report = skew_report(FeatureStore(repo).config, train)
    assert report.served_rows == len(USERS)
    (note,) = [n for n in report.notes if "definitions" in n]
    assert note.startswith("3 logged rows were read with definitions of 'stats' that the registry")
    assert f"left out of the window ({len(USERS)} rows remain)" in note
    baseline = skew_report(
        FeatureStore(repo).config, window=Window(T0), baseline=Window(until=T0 + timedelta(days=1))
    )
    assert baseline.reference_rows == baseline.served_rows == len(USERS)
    assert sum("left out of the baseline" in n for n in baseline.notes) == 1
    shutil.rmtree(repo / "data" / "feature_log")
    write_log(repo, log_table([old]), "before-apply")
    _one_line_error(
        _cli("skew-report", "--repo", str(repo), "--training-set", str(train)),
        "3 logged rows were read with definitions of 'stats'",
        "every row of the window",
    )


def test_rows_of_another_fingerprint_beside_good_ones_are_left_out_and_reported(
    repo: Path,
) -> None:
    _predict_log(repo)
    _predict_log(repo, fingerprint="f" * 64, name="other")
    report = skew_report(FeatureStore(repo).config, _training_set(repo))
    assert report.served_rows == len(USERS)
    (finding,) = report.schema
    assert finding.kind == "fingerprint" and "left out" in finding.message
    assert finding.level is Level.WARN


def test_a_training_set_without_its_manifest(repo: Path) -> None:
    _predict_log(repo)
    train = _training_set(repo)
    train.with_name(train.name + ".manifest.json").unlink()
    _one_line_error(
        _cli("skew-report", "--repo", str(repo), "--training-set", str(train)),
        "has no manifest train.parquet.manifest.json",
        "featurestore training-set",
    )
    _one_line_error(
        _cli("skew-report", "--repo", str(repo), "--training-set", str(repo / "nope.parquet")),
        "does not exist",
    )


def test_a_served_feature_the_training_set_lacks_is_a_schema_finding(repo: Path) -> None:
    store = FeatureStore(repo)
    request = served_request(store, USERS)  # /get-online-features of x, n and s
    store.close()
    write_log(repo, log_table([request]), "online")
    train = _training_set(repo, ["stats:x", "stats:n"])  # no service, no stats:s
    report = skew_report(FeatureStore(repo).config, train)
    (extra,) = [s for s in report.schema if s.kind == "extra"]
    assert extra.feature == "stats:s" and extra.level is Level.ALERT
    assert "the training set has no column for it" in extra.message
    assert [f.ref for f in report.features] == ["stats:x", "stats:n"]
    result = _cli("skew-report", "--repo", str(repo), "--training-set", str(train))
    assert result.returncode == 3, result.stderr
    assert "stats:s is served" in result.stdout


def test_labels_matching_no_request(repo: Path, tmp_path: Path) -> None:
    _predict_log(repo)
    labels = tmp_path / "labels.parquet"
    pd.DataFrame({"request_id": ["nope"], "is_fraud": [1]}).to_parquet(labels)
    _one_line_error(
        _cli(
            "performance-report",
            "--repo",
            str(repo),
            "--labels",
            str(labels),
            "--label",
            "is_fraud",
        ),
        "none of the 1 labels",
        "(by request_id)",
    )
    pd.DataFrame({"user_id": [1], "event_timestamp": [T0.replace(year=2024)], "y": [1]}).to_parquet(
        labels
    )
    with pytest.raises(ReportError, match="within 1:00:00"):
        performance_report(FeatureStore(repo).config, labels, label="y")
    _one_line_error(
        _cli("performance-report", "--repo", str(repo), "--labels", str(labels)),
        "name the label column",
    )
    _one_line_error(
        _cli("performance-report", "--repo", str(repo), "--labels", str(labels), "--label", "z"),
        "no label column 'z'",
    )


def test_unknown_report_outputs_and_options(repo: Path) -> None:
    _predict_log(repo)
    _one_line_error(
        _cli("consistency-report", "--repo", str(repo), "--out", str(repo / "r.txt")),
        "name it .json",
    )
    result = _cli("skew-report", "--repo", str(repo))
    assert result.returncode == 2 and "--training-set" in result.stderr
    with pytest.raises(ReportError, match="not before until"):
        consistency_report(
            FeatureStore(repo),
            Window(T0, T0),
        )
