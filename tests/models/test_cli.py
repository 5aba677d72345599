"""``featurestore train`` as a user runs it (in-process, tests/cli.py): real files, a warm start."""

from __future__ import annotations

import json
from pathlib import Path

from model_repo import write_repo

from featurestore import FeatureStore
from tests.cli import run_cli as run


def test_train_then_warm_start_then_refuse_after_a_change(
    repo: Path, entities: Path, tmp_path: Path
) -> None:
    first = tmp_path / "artifacts" / "v1"
    common = ["--repo", repo, "--service", "svc", "--entities", entities, "--label", "is_fraud"]
    result = run("train", *common, "--out", first, "--num-boost-round", "20", "--threads", "1")
    assert result.returncode == 0, result.stderr
    meta = json.loads((first / "metadata.json").read_text())
    assert f"Split at {meta['split']['time']}: trained on {meta['split']['train_rows']}" in (
        result.stdout
    )
    assert f"Validation AUC {meta['metrics']['valid_auc']:.4f}" in result.stdout
    assert meta["num_trees"] == 20 and meta["parent"] is None

    second = tmp_path / "artifacts" / "v2"
    result = run(
        "train", *common, "--out", second, "--warm-start", first, "--num-boost-round", "5",
        "--valid-fraction", "0.3", "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"warm-started from {first}" in result.stdout
    child = json.loads((second / "metadata.json").read_text())
    assert child["parent"]["model_sha256"] == meta["model_sha256"]
    assert child["num_trees"] == 25 and child["split"]["valid_fraction"] == 0.3

    write_repo(repo, risk_ttl="timedelta(hours=12)")
    FeatureStore(repo).apply()
    result = run("train", *common, "--out", tmp_path / "v3", "--warm-start", second)
    assert result.returncode == 1
    assert "cannot warm-start" in result.stderr and "risk: changed" in result.stderr
    assert "ttl: 3d -> 12h" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "v3").exists()


def test_train_rejects_a_non_binary_label_on_the_command_line(
    repo: Path, entities: Path, tmp_path: Path
) -> None:
    result = run(
        "train", "--repo", repo, "--service", "svc", "--entities", entities,
        "--label", "user_id", "--out", tmp_path / "m",
    )  # fmt: skip
    assert result.returncode == 1
    assert "label column 'user_id' is not binary" in result.stderr
