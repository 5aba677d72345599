"""Fixtures: a small repo with signal, and a model trained on it (see model_repo.py).

``trained`` is built once per session (per xdist worker): tests only read it, and a test that
changes its repo or model works on ``trained.copy(tmp_path)``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from model_repo import Trained, labeled_entities, write_repo

from featurestore import FeatureStore, models


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = write_repo(tmp_path / "repo")
    FeatureStore(root).apply()
    return root


@pytest.fixture
def entities(repo: Path) -> Path:
    path = repo / "labeled.parquet"
    labeled_entities(repo).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("trained")
    repo = write_repo(root / "repo")
    FeatureStore(repo).apply()
    entities = repo / "labeled.parquet"
    labeled_entities(repo).to_parquet(entities, index=False)
    artifact = models.train(
        repo,
        service="svc",
        entities=entities,
        label="is_fraud",
        out=root / "model",
        num_boost_round=40,
        threads=1,
        progress=False,
    )
    return Trained(repo, entities, root / "model", artifact)
