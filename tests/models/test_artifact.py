"""The artifact on disk: a fresh process scores exactly like the trained model; tampering fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from model_repo import Trained

from featurestore import ModelError, models

FEATURESTORE = [str(Path(sys.executable).with_name("featurestore"))]  # the console script


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FEATURESTORE, *map(str, args)], capture_output=True, text=True, timeout=300
    )


def test_predict_batch_in_a_fresh_process_equals_the_in_memory_model(
    trained: Trained, tmp_path: Path
) -> None:
    entities = pd.read_parquet(trained.entities).drop(columns=["is_fraud"]).iloc[::3]
    entities_path = tmp_path / "entities.parquet"
    entities.to_parquet(entities_path, index=False)
    in_memory = models.predict(trained.artifact, trained.repo, entities)  # the trained Booster

    out = tmp_path / "scored.parquet"
    result = run(
        "predict-batch", "--repo", trained.repo, "--model", trained.model,
        "--entities", entities_path, "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"Scored {len(entities)} rows" in result.stdout
    scored = pq.read_table(out)
    assert scored.column_names == [*entities.columns, "prediction"]
    np.testing.assert_array_equal(scored["prediction"].to_numpy(), in_memory["prediction"])
    np.testing.assert_array_equal(scored["user_id"].to_numpy(), entities["user_id"].to_numpy())
    assert 0 < in_memory["prediction"].min() < in_memory["prediction"].max() < 1
    provenance = scored.schema.metadata
    assert (
        provenance[b"featurestore.model_sha256"] == trained.artifact.metadata.model_sha256.encode()
    )


def test_load_round_trips_metadata_and_predictions(trained: Trained) -> None:
    loaded = models.load(trained.model)
    assert loaded.metadata == trained.artifact.metadata
    x = np.array([[0.5, 1.0, 3.0, 1.0], [np.nan, models.UNKNOWN_CODE, np.nan, np.nan]])
    np.testing.assert_array_equal(loaded.booster.predict(x), trained.artifact.booster.predict(x))


def test_a_tampered_model_file_fails_its_checksum(trained: Trained, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(trained.model, model)
    text = (model / "model.txt").read_text()
    # Change one leaf value: still a valid LightGBM model, no longer the trained one.
    start = text.index("leaf_value=") + len("leaf_value=")
    first = text[start:].split(" ", 1)[0]
    (model / "model.txt").write_text(text[:start] + "9" + first + text[start + len(first) :])
    with pytest.raises(ModelError, match=r"does not match the checksum.*modified after training"):
        models.load(model)
    result = run("models", "describe", model, "--repo", trained.repo)
    assert result.returncode == 1
    assert "does not match the checksum" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_folder_without_metadata_is_not_a_model(trained: Trained, tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    shutil.copy(trained.model / "model.txt", folder / "model.txt")
    with pytest.raises(ModelError, match=r"has no metadata.json: it is not a model artifact"):
        models.load(folder)
    with pytest.raises(ModelError, match="does not exist"):
        models.load(tmp_path / "nowhere")
    result = run(
        "predict-batch", "--repo", trained.repo, "--model", folder,
        "--entities", trained.entities, "--out", tmp_path / "scored.parquet",
    )  # fmt: skip
    assert result.returncode == 1 and "has no metadata.json" in result.stderr
    assert not (tmp_path / "scored.parquet").exists()


def test_csv_entities_score_like_parquet(trained: Trained, tmp_path: Path) -> None:
    entities = pd.read_parquet(trained.entities).iloc[:50]
    csv = tmp_path / "entities.csv"
    entities.to_csv(csv, index=False)  # timestamps become ISO strings
    from_csv = models.predict(trained.artifact, trained.repo, csv)
    from_frame = models.predict(trained.artifact, trained.repo, entities)
    np.testing.assert_array_equal(from_csv["prediction"], from_frame["prediction"])
