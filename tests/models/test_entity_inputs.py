"""``train``, ``predict`` and ``predict-batch`` read entity rows through the one reader
(featurestore/offline/entities.py, behind ``get_historical_features``): the same inputs
as ``training-set``, the same one-line errors, and outputs checked before any work."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from model_repo import Trained

from featurestore import ModelError, OutputError, RetrievalError, models


def test_csv_and_folder_entities_score_like_parquet(trained: Trained, tmp_path: Path) -> None:
    entities = pd.read_parquet(trained.entities).drop(columns=["is_fraud"]).iloc[::7]
    expected = models.predict(trained.artifact, trained.repo, entities)["prediction"].tolist()
    csv = tmp_path / "entities.csv"
    entities.to_csv(csv, index=False)
    folder = tmp_path / "parts"
    folder.mkdir()
    half = len(entities) // 2
    entities.iloc[:half].to_parquet(folder / "a.parquet", index=False)
    entities.iloc[half:].to_parquet(folder / "b.parquet", index=False)
    for given in (csv, folder):
        got = models.predict(trained.artifact, trained.repo, given)
        assert got["prediction"].tolist() == pytest.approx(expected, rel=0, abs=0), given
        assert list(got.columns) == [*entities.columns, "prediction"]


def test_predict_batch_refuses_an_unwritable_out_before_any_work(
    trained: Trained, tmp_path: Path
) -> None:
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "scores.parquet"
    with pytest.raises(OutputError, match=f"cannot write the scores to {out}"):
        models.predict_batch(trained.model, trained.repo, tmp_path / "never_read.parquet", out)


def test_predict_batch_never_writes_over_what_it_reads(trained: Trained, tmp_path: Path) -> None:
    source = trained.repo / "data" / "flags.parquet"
    before = source.read_bytes()
    with pytest.raises(
        OutputError,
        match=f"cannot write the scores to {source}: it is read as the source of feature view 'flags'",
    ):
        models.predict_batch(trained.model, trained.repo, trained.entities, source)
    with pytest.raises(OutputError, match="it is read as the entity rows; choose another --out"):
        models.predict_batch(trained.model, trained.repo, trained.entities, trained.entities)
    assert source.read_bytes() == before


def test_entity_problems_are_the_readers_errors(trained: Trained, tmp_path: Path) -> None:
    doubled = pd.read_parquet(trained.entities)
    doubled.columns = [*doubled.columns[:-1], doubled.columns[0]]
    with pytest.raises(RetrievalError, match="duplicate column names"):
        models.predict(trained.artifact, trained.repo, doubled)
    with pytest.raises(RetrievalError, match="no file or folder at"):
        models.predict(trained.artifact, trained.repo, tmp_path / "missing.csv")


def test_predict_refuses_what_training_refuses_and_never_drops_a_column(
    trained: Trained,
) -> None:
    """A row without a time gets no feature from the point-in-time join: training refuses
    it, and scoring it used to return a number made of nulls. An entity column named
    ``prediction`` used to be replaced by the scores without a word."""
    entities = pd.read_parquet(trained.entities).drop(columns=["is_fraud"]).iloc[:20]
    no_time = entities.astype({"event_timestamp": object})
    no_time.loc[[3, 7], "event_timestamp"] = None
    with pytest.raises(ModelError, match=r"entity rows \[3, 7\] have no event_timestamp"):
        models.predict(trained.artifact, trained.repo, no_time)
    with pytest.raises(ModelError, match=r"entity column 'prediction'.*rename it"):
        models.predict(trained.artifact, trained.repo, entities.assign(prediction=0.5))
