"""What the prediction service runs with: the repo, the model, and its limits.

From ``featurestore.yaml`` (``serving: {max_entities, max_lag}``, ``feature_log: {path,
include_online_features, queue_size}``) and the environment (``FEATURESTORE_API_TOKEN``).
Worker processes are started by uvicorn in fresh interpreters, so the command line's
choices reach them through ``FEATURESTORE_SERVE_REPO`` / ``FEATURESTORE_SERVE_MODEL``
(``from_environment``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from featurestore.config import FeatureLogConfig, RepoConfig, ServingConfig, load_config
from featurestore.errors import ConfigError

TOKEN_ENV = "FEATURESTORE_API_TOKEN"
REPO_ENV = "FEATURESTORE_SERVE_REPO"
MODEL_ENV = "FEATURESTORE_SERVE_MODEL"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client when first imported


@dataclass(frozen=True)
class ServingSettings:
    """Everything ``create_app`` needs: the repo's parsed ``featurestore.yaml`` (its
    ``serving`` and ``feature_log`` sections), the model folder, and the API token."""

    config: RepoConfig
    model: Path
    api_token: str | None = None

    @property
    def repo(self) -> Path:
        return self.config.repo_path

    @property
    def serving(self) -> ServingConfig:
        return self.config.serving

    @property
    def feature_log(self) -> FeatureLogConfig:
        return self.config.feature_log


def load_settings(repo: str | os.PathLike[str], model: str | os.PathLike[str]) -> ServingSettings:
    """The service's settings for ``repo`` and ``model`` (ConfigError names a bad setting)."""
    return ServingSettings(
        config=load_config(repo),
        model=Path(model).resolve(),
        api_token=os.environ.get(TOKEN_ENV) or None,
    )


def from_environment() -> ServingSettings:
    """The settings a worker process was started with (see the module docstring)."""
    repo, model = os.environ.get(REPO_ENV), os.environ.get(MODEL_ENV)
    if not repo or not model:
        raise ConfigError(f"set {REPO_ENV} and {MODEL_ENV} (featurestore serve does)")
    return load_settings(repo, model)
