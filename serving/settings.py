"""What the prediction service runs with: the repo, the model, and its limits.

From ``featurestore.yaml`` (``serving: {max_entities, max_lag}``, ``feature_log: {path,
include_online_features, queue_size}``) and the environment (``FEATURESTORE_API_TOKEN``).
Worker processes are started by uvicorn in fresh interpreters, so the command line's
choices reach them through ``FEATURESTORE_SERVE_REPO`` / ``FEATURESTORE_SERVE_MODEL``
(``from_environment``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from featurestore.config import RepoConfig, load_config
from featurestore.errors import ConfigError

TOKEN_ENV = "FEATURESTORE_API_TOKEN"
REPO_ENV = "FEATURESTORE_SERVE_REPO"
MODEL_ENV = "FEATURESTORE_SERVE_MODEL"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client when first imported
DEFAULT_MAX_ENTITIES = 10_000
DEFAULT_QUEUE_SIZE = 100_000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class ServingSettings:
    """Everything ``create_app`` needs; ``config`` is the repo's parsed ``featurestore.yaml``."""

    config: RepoConfig
    model: Path
    max_entities: int = DEFAULT_MAX_ENTITIES
    max_lag: timedelta | None = None
    log_path: Path | None = None
    log_online_features: bool = False
    log_queue_size: int = DEFAULT_QUEUE_SIZE
    api_token: str | None = None

    @property
    def repo(self) -> Path:
        return self.config.repo_path


def load_settings(repo: str | os.PathLike[str], model: str | os.PathLike[str]) -> ServingSettings:
    """The service's settings for ``repo`` and ``model`` (ConfigError names a bad setting)."""
    config = load_config(repo)
    serving, feature_log = _sections(config)
    unknown = set(serving) - {"max_entities", "max_lag"}
    unknown |= {f"feature_log.{k}" for k in feature_log} - {
        "feature_log.path",
        "feature_log.include_online_features",
        "feature_log.queue_size",
    }
    if unknown:
        raise ConfigError(f"{config.repo_path}: unknown serving setting(s) {sorted(unknown)}")
    return ServingSettings(
        config=config,
        model=Path(model).resolve(),
        max_entities=_positive(serving.get("max_entities", DEFAULT_MAX_ENTITIES), "max_entities"),
        max_lag=_duration(serving.get("max_lag"), "serving.max_lag"),
        log_path=config.feature_log_path,
        log_online_features=_boolean(
            feature_log.get("include_online_features", False),
            "feature_log.include_online_features",
        ),
        log_queue_size=_positive(
            feature_log.get("queue_size", DEFAULT_QUEUE_SIZE), "feature_log.queue_size"
        ),
        api_token=os.environ.get(TOKEN_ENV) or None,
    )


def from_environment() -> ServingSettings:
    """The settings a worker process was started with (see the module docstring)."""
    repo, model = os.environ.get(REPO_ENV), os.environ.get(MODEL_ENV)
    if not repo or not model:
        raise ConfigError(f"set {REPO_ENV} and {MODEL_ENV} (featurestore serve does)")
    return load_settings(repo, model)


def _sections(config: RepoConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The raw ``serving`` and ``feature_log`` sections of ``featurestore.yaml``."""
    import yaml

    from featurestore.config import CONFIG_FILE

    raw = yaml.safe_load((config.repo_path / CONFIG_FILE).read_text()) or {}
    out = []
    for key in ("serving", "feature_log"):
        section = raw.get(key) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{config.repo_path / CONFIG_FILE}: '{key}' must be a mapping")
        out.append(section)
    return out[0], out[1]


def _positive(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def _boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false, got {value!r}")
    return value


def _duration(value: Any, what: str) -> timedelta | None:
    """``None``, seconds as a number, or ``"90s"``, ``"15m"``, ``"6h"``, ``"2d"``."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"{what} must be a duration like '30m', '6h' or '2d', got {value!r}")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
