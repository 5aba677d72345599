"""The artifact on disk: a fresh process scores exactly like the trained model; tampering fails."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from model_repo import Trained

from featurestore import ModelError, models
from featurestore.models import ArtifactMetadata
from tests.cli import run_cli as run

FEATURESTORE = [str(Path(sys.executable).with_name("featurestore"))]  # the console script


def run_real(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The installed console script in a fresh process (no state shared with the test's)."""
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
    result = run_real(
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


def _edit_metadata(model: Path, edit: Any, *, recompute: bool = False) -> None:
    """Edit metadata.json; ``recompute`` also refreshes its checksums (as a forger would)."""
    path = model / "metadata.json"
    data = json.loads(path.read_text())
    edit(data)
    if recompute:
        data["metadata_sha256"] = ArtifactMetadata.from_json(data).checksums()
    path.write_text(json.dumps(data))


def _swap_categories(data: dict[str, Any]) -> None:
    country = next(f for f in data["features"] if f["dtype"] == "String")
    country["categories"][0], country["categories"][1] = (
        country["categories"][1],
        country["categories"][0],
    )


TAMPERING = {
    "category mapping": (_swap_categories, "the feature order, dtypes and category mappings"),
    "feature order": (
        lambda d: d["features"].reverse(),
        "the feature order, dtypes and category mappings",
    ),
    "service fingerprint": (
        lambda d: d.update(service_fingerprint="0" * 64),
        "the feature binding",
    ),
    "view fingerprint": (
        lambda d: d["views"][0].update(projection_fingerprint="0" * 64),
        "the feature binding",
    ),
    "as_of": (lambda d: d.update(as_of="event"), "the feature binding"),
    "model checksum": (
        lambda d: d.update(model_sha256="0" * 64),
        "the model file's name, checksum and tree count",
    ),
}


@pytest.mark.parametrize("case", TAMPERING)
def test_tampered_metadata_is_refused_naming_the_part(
    trained: Trained, tmp_path: Path, case: str
) -> None:
    """Defect: nothing covered metadata.json, so an edited category mapping or feature order
    silently changed every prediction."""
    edit, part = TAMPERING[case]
    model = tmp_path / "model"
    shutil.copytree(trained.model, model)
    _edit_metadata(model, edit)
    with pytest.raises(ModelError, match=rf"metadata.json: {part}.* do not match their checksum"):
        models.load(model)
    result = run("models", "describe", model, "--repo", trained.repo)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert part in result.stderr and result.stderr.count("\n") == 1


def test_descriptive_metadata_may_change(trained: Trained, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(trained.model, model)
    _edit_metadata(model, lambda d: d["metrics"].update(valid_auc=0.99))
    assert models.load(model).metadata.metrics["valid_auc"] == 0.99


def test_only_the_artifacts_own_model_file_is_read(trained: Trained, tmp_path: Path) -> None:
    """Defect: ``model_file`` could name any file, which was then loaded (here another,
    valid model whose checksum the forger also wrote)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = trained.artifact.booster.model_to_string(num_iteration=5).encode()
    (elsewhere / "model.txt").write_bytes(other)
    model = tmp_path / "model"
    shutil.copytree(trained.model, model)
    _edit_metadata(
        model,
        lambda d: d.update(
            model_file="../elsewhere/model.txt", model_sha256=hashlib.sha256(other).hexdigest()
        ),
        recompute=True,
    )
    with pytest.raises(ModelError, match=r"model_file '../elsewhere/model.txt' is not 'model.txt'"):
        models.load(model)


@pytest.mark.parametrize(
    "text",
    ["[]", "null", '{"format_version": 2}', '{"format_version": 2, "features": 3'],
)
def test_malformed_metadata_is_a_model_error(trained: Trained, tmp_path: Path, text: str) -> None:
    model = tmp_path / "model"
    shutil.copytree(trained.model, model)
    (model / "metadata.json").write_text(text)
    with pytest.raises(ModelError, match=r"metadata\.json"):
        models.load(model)


def test_an_artifact_of_the_previous_format_asks_for_retraining(
    trained: Trained, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(trained.model, model)
    _edit_metadata(model, lambda d: (d.pop("metadata_sha256"), d.update(format_version=1)))
    with pytest.raises(ModelError, match="format version 1 is not 2; retrain"):
        models.load(model)
