"""Training through the offline join: the artifact, the time split, warm starts, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from model_repo import Trained, labeled_entities, write_repo

from featurestore import FeatureStore, ModelError, RetrievalError, models
from featurestore.models.artifact import check_writable
from featurestore.models.training import time_split


def test_artifact_records_the_binding_features_split_and_metrics(trained: Trained) -> None:
    meta = json.loads((trained.model / "metadata.json").read_text())
    text = (trained.model / "model.txt").read_bytes()
    assert text.startswith(b"tree\n")  # LightGBM's text format, not a pickle
    assert meta["model_sha256"] == hashlib.sha256(text).hexdigest()

    state = FeatureStore(trained.repo).state
    assert meta["feature_service"] == "svc"
    assert meta["service_fingerprint"] == state.service_record("svc").fingerprint
    by_view = {v["name"]: v for v in meta["views"]}
    for projection in state.service("svc").projections:
        recorded = by_view[projection.view.name]
        assert recorded["projection_fingerprint"] == state.projection_fingerprint(projection)
        assert recorded["features"] == list(projection.features)

    assert [f["ref"] for f in meta["features"]] == state.service("svc").refs
    assert [f["dtype"] for f in meta["features"]] == ["Float64", "String", "Int32", "Bool"]
    country = meta["features"][1]
    assert country["column"] == "risk__country"
    assert country["categories"] == sorted(country["categories"])
    assert set(country["categories"]) == {"US", "DE", "FR", "NG", "BR"}

    assert meta["label"] == "is_fraud" and meta["as_of"] == "created"
    assert meta["training_set"]  # the offline engine's manifest
    assert meta["hyperparameters"]["num_boost_round"] == 40
    assert meta["hyperparameters"]["params"]["objective"] == "binary"
    assert {"lightgbm", "pandas", "pyarrow", "featurestore", "python"} <= set(
        meta["library_versions"]
    )
    assert meta["parent"] is None
    metrics = meta["metrics"]
    assert metrics["valid_auc"] > 0.75  # the fixture's label has strong signal
    assert metrics["valid_log_loss"] < metrics["valid_log_loss_of_base_rate"]
    assert 0 < metrics["valid_base_rate"] < 1


def test_split_is_by_time_without_overlap(trained: Trained) -> None:
    split = trained.artifact.metadata.split
    entities = pd.read_parquet(trained.entities)
    split_time = pd.Timestamp(split["time"])
    before = entities["event_timestamp"] < split_time
    assert split["train_rows"] == before.sum() and split["valid_rows"] == (~before).sum()
    assert pd.Timestamp(split["train_end"]) < split_time <= pd.Timestamp(split["valid_start"])
    assert abs(split["valid_rows"] / len(entities) - 0.2) < 0.02


def test_rows_sharing_the_split_time_all_validate() -> None:
    stamps = pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-02", "2026-01-03"]))
    split = time_split(stamps, 0.6)
    assert split.time == pd.Timestamp("2026-01-02", tz="UTC")
    assert list(split.train) == [True, False, False, False]
    with pytest.raises(ModelError, match="single timestamp"):
        time_split(pd.Series(pd.to_datetime(["2026-01-01"] * 5)), 0.2)
    with pytest.raises(ModelError, match="between 0 and 1"):
        time_split(stamps, 1.0)
    with pytest.raises(ModelError, match=r"entity rows \[1\] have no event_timestamp"):
        time_split(pd.Series([stamps[0], pd.NaT, *stamps[1:]]), 0.2)


def test_categories_are_fitted_on_training_rows_only(tmp_path: Path) -> None:
    # A country that first appears after the split time must be "unknown" to the model.
    repo = write_repo(tmp_path / "repo")
    risk = pd.read_parquet(repo / "data" / "risk.parquet")
    late = risk["event_ts"] >= pd.Timestamp("2026-01-27", tz="UTC")
    risk.loc[late & (risk["country"] == "FR"), "country"] = "ZZ"
    risk.to_parquet(repo / "data" / "risk.parquet", index=False)
    FeatureStore(repo).apply()
    artifact = models.train(
        repo,
        service="svc",
        entities=labeled_entities(repo),
        label="is_fraud",
        out=tmp_path / "model",
        num_boost_round=5,
        progress=False,
    )
    assert pd.Timestamp(artifact.metadata.split["time"]) < pd.Timestamp("2026-01-27", tz="UTC")
    assert "ZZ" not in artifact.features[1].categories


def test_warm_start_with_the_same_fingerprint_continues_and_records_its_parent(
    trained: Trained, tmp_path: Path
) -> None:
    parent = trained.artifact
    fresh = labeled_entities(trained.repo, seed=11)
    child = models.train(
        trained.repo,
        service="svc",
        entities=fresh,
        label="is_fraud",
        out=tmp_path / "child",
        warm_start=trained.model,
        num_boost_round=10,
        progress=False,
    )
    assert child.metadata.parent["model_sha256"] == parent.metadata.model_sha256
    assert child.metadata.parent["path"] == str(trained.model)
    assert child.metadata.num_trees == parent.metadata.num_trees + 10
    assert child.metadata.hyperparameters["params"] == parent.metadata.hyperparameters["params"]
    # codes never shift: the parent's categories are a prefix of the child's
    for p, c in zip(parent.features, child.features, strict=True):
        assert p.column == c.column
        if p.categories is not None:
            assert c.categories[: len(p.categories)] == p.categories
    # the child's first trees are the parent's: scored through them alone, they agree
    frame = FeatureStore(trained.repo).get_historical_features(
        fresh, feature_service="svc", full_feature_names=True, as_of="created"
    )
    x = models.build_matrix(frame.to_df(), child.features)
    np.testing.assert_allclose(
        child.booster.predict(x, num_iteration=parent.metadata.num_trees),
        parent.booster.predict(x),
        rtol=1e-12,
    )


def test_warm_start_after_a_view_changed_is_refused_naming_it(
    trained: Trained, tmp_path: Path
) -> None:
    copy = trained.copy(tmp_path)
    write_repo(copy.repo, risk_ttl="timedelta(days=1)")
    FeatureStore(copy.repo).apply()
    with pytest.raises(
        ModelError, match=r"cannot warm-start.*risk: changed.*ttl: 3d -> 1d"
    ) as info:
        models.train(
            copy.repo,
            service="svc",
            entities=copy.entities,
            label="is_fraud",
            out=tmp_path / "child",
            warm_start=copy.model,
            num_boost_round=5,
            progress=False,
        )
    assert "flags" not in str(info.value)
    assert not (tmp_path / "child").exists()


def test_warm_start_after_a_description_change_is_accepted(
    trained: Trained, tmp_path: Path
) -> None:
    copy = trained.copy(tmp_path)
    write_repo(copy.repo, risk_description="Reworded, same values.")
    FeatureStore(copy.repo).apply()
    child = models.train(
        copy.repo,
        service="svc",
        entities=copy.entities,
        label="is_fraud",
        out=tmp_path / "child",
        warm_start=copy.model,
        num_boost_round=3,
        progress=False,
    )
    assert child.metadata.parent is not None


def test_warm_start_keeps_the_parents_column_order_when_the_service_lists_views_anew(
    trained: Trained, tmp_path: Path
) -> None:
    copy = trained.copy(tmp_path)
    write_repo(copy.repo, service_features="flags, risk")  # same fingerprint, new order
    FeatureStore(copy.repo).apply()
    assert models.describe(copy.model, copy.repo).binding.matches
    child = models.train(
        copy.repo,
        service="svc",
        entities=copy.entities,
        label="is_fraud",
        out=tmp_path / "child",
        warm_start=copy.model,
        num_boost_round=3,
        progress=False,
    )
    assert [f.column for f in child.features] == [f.column for f in trained.artifact.features]
    assert child.booster.feature_name() == [f.column for f in trained.artifact.features]


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda df: df.drop(columns=["is_fraud"]), ModelError, "label column 'is_fraud' is not"),
        (lambda df: df.assign(is_fraud=df["is_fraud"] * 2), ModelError, "is not binary"),
        (
            lambda df: df.assign(is_fraud=df["is_fraud"].astype("Int64").where(df.index > 0)),
            ModelError,
            "has nulls",
        ),
        (
            lambda df: df.drop(columns=["user_id"]),
            RetrievalError,
            "no column 'user_id', the join key feature view",
        ),
        (
            lambda df: df.drop(columns=["event_timestamp"]),
            RetrievalError,
            "no 'event_timestamp' column",
        ),
        (
            lambda df: df.assign(event_timestamp=df["event_timestamp"].where(df.index % 7 != 3)),
            ModelError,
            r"entity rows \[3, 10, 17, 24, 31\] have no event_timestamp",
        ),
    ],
    ids=[
        "label missing",
        "label not binary",
        "label null",
        "no join key",
        "no timestamp",
        "null timestamps",
    ],
)
def test_bad_entities_are_clear_errors(trained: Trained, tmp_path, change, error, message) -> None:
    entities = change(pd.read_parquet(trained.entities))
    with pytest.raises(error, match=message):
        models.train(
            trained.repo,
            service="svc",
            entities=entities,
            label="is_fraud",
            out=tmp_path / "m",
            progress=False,
        )
    assert not (tmp_path / "m").exists()


def test_a_validation_part_with_one_class_is_refused(trained: Trained, tmp_path: Path) -> None:
    entities = pd.read_parquet(trained.entities)
    late = entities["event_timestamp"] >= entities["event_timestamp"].quantile(0.8)
    entities.loc[late, "is_fraud"] = 0
    with pytest.raises(ModelError, match=r"validation rows .* hold only one label value"):
        models.train(
            trained.repo,
            service="svc",
            entities=entities,
            label="is_fraud",
            out=tmp_path / "m",
            progress=False,
        )


def test_training_rows_without_any_feature_value_are_refused(
    trained: Trained, tmp_path: Path
) -> None:
    """Entity times before every source row (a unit or time-zone slip) give the join
    nothing: every feature is null on every training row. It used to train a constant
    model (validation AUC 0.5) and write it, without a word."""
    entities = pd.read_parquet(trained.entities)
    entities["event_timestamp"] -= pd.Timedelta(days=400)
    with pytest.raises(
        ModelError, match=r"every feature of service 'svc' is null on all \d+ "
    ) as e:
        models.train(
            trained.repo, service="svc", entities=entities, label="is_fraud",
            out=tmp_path / "m", progress=False,
        )  # fmt: skip
    assert "against their created times: training joins as of created time" in str(e.value)
    assert not (tmp_path / "m").exists()


def test_zero_entity_rows_are_refused(trained: Trained, tmp_path: Path) -> None:
    empty = pd.read_parquet(trained.entities).iloc[:0]
    path = tmp_path / "empty.parquet"
    empty.to_parquet(path, index=False)
    for entities in (empty, path):
        with pytest.raises(ModelError, match="hold no rows: there is nothing to train on"):
            models.train(
                trained.repo, service="svc", entities=entities, label="is_fraud",
                out=tmp_path / "m", progress=False,
            )  # fmt: skip
    assert not (tmp_path / "m").exists()


def test_an_unwritable_out_fails_before_training_in_one_line(
    trained: Trained, tmp_path: Path
) -> None:
    """Defect: an --out under a file failed with a traceback, after the whole training."""
    from click.testing import CliRunner

    from featurestore.cli import main

    (tmp_path / "a_file").write_text("not a folder")
    result = CliRunner().invoke(
        main,
        ["train", "--repo", str(trained.repo), "--service", "svc",
         "--entities", str(trained.entities), "--label", "is_fraud",
         "--out", str(tmp_path / "a_file" / "model")],
    )  # fmt: skip
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.count("\n") == 1
    assert "cannot write the model artifact" in result.output
    assert f"{tmp_path / 'a_file'} is a file, not a folder" in result.output
    with pytest.raises(ModelError, match="is a file, not a folder"):
        check_writable(tmp_path / "a_file" / "deeper" / "model")


def test_a_read_only_out_fails_before_training(
    trained: Trained, tmp_path: Path, as_unprivileged: list[str]
) -> None:
    import subprocess
    import sys

    folder = tmp_path / "read_only"
    folder.mkdir(mode=0o555)
    featurestore = Path(sys.executable).with_name("featurestore")
    result = subprocess.run(
        [*as_unprivileged, str(featurestore), "train", "--repo", str(trained.repo),
         "--service", "svc", "--entities", str(trained.entities), "--label", "is_fraud",
         "--out", str(folder / "model")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"{folder} is not writable" in result.stderr
    assert not (folder / "model").exists()


def test_the_thread_count_does_not_change_the_models_identity(
    trained: Trained, tmp_path: Path
) -> None:
    # The same data, parameters and seed on another machine (another core count) or with
    # --threads grow the same trees (deterministic=True); LightGBM recorded the count in the
    # file, so the model's sha256 (reports' --model, the feature log) differed.
    again = models.train(
        trained.repo,
        service="svc",
        entities=trained.entities,
        label="is_fraud",
        out=tmp_path / "two_threads",
        num_boost_round=40,
        threads=2,
        progress=False,
    )
    assert again.metadata.model_sha256 == trained.artifact.metadata.model_sha256
    text = (tmp_path / "two_threads" / "model.txt").read_bytes()
    assert hashlib.sha256(text).hexdigest() == again.metadata.model_sha256  # still the file's
    assert b"[num_threads: 0]" in text
