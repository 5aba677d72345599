"""Train a LightGBM model on a feature service: time-based split, warm start, the artifact.

The training set comes from the offline engine's point-in-time join (``as_of="created"``:
each row sees only feature values that existed at its timestamp, as serving would have).
Rows are split by their entity timestamp: those before the split time train, those at or
after it validate, so no validation row is older than a training row.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from featurestore.errors import ModelError
from featurestore.models.artifact import (
    ArtifactMetadata,
    ModelArtifact,
    check_writable,
    load,
    save,
)
from featurestore.models.binding import trained_views
from featurestore.models.entities import open_store
from featurestore.models.matrix import FeatureSpec, build_matrix, fit_categories
from featurestore.models.progress import TrainingProgress
from featurestore.offline.plan import ENTITY_TIMESTAMP

if TYPE_CHECKING:
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from featurestore.manifest import TrainingSetManifest
    from featurestore.registry_state import RegistryState, ServiceRecord
    from featurestore.store import FeatureStore

AS_OF: Literal["created"] = "created"
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": ["auc", "binary_logloss"],
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "seed": 0,
    "deterministic": True,
    "verbose": -1,
}


@dataclass(frozen=True)
class TimeSplit:
    """Rows before ``time`` train; rows at or after it validate (boolean masks, row order)."""

    time: pd.Timestamp
    train: np.ndarray
    valid: np.ndarray


def time_split(timestamps: pd.Series, valid_fraction: float) -> TimeSplit:
    """Split at the timestamp below which ``1 - valid_fraction`` of the rows fall.

    Rows sharing the split timestamp all go to validation, so no timestamp is on both sides.
    A row without a timestamp is a ``ModelError`` naming it: it belongs to neither side
    (and the point-in-time join gave it no feature values).
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ModelError(f"valid fraction must be between 0 and 1, got {valid_fraction}")
    stamps = require_times(timestamps)
    ordered = stamps.sort_values(ignore_index=True)
    split = ordered.iloc[min(int(len(ordered) * (1.0 - valid_fraction)), len(ordered) - 1)]
    valid = (stamps >= split).to_numpy()
    train = ~valid
    if not train.any():
        raise ModelError(
            f"no entity row is earlier than the split time {split.isoformat()}: the rows "
            "span a single timestamp; give rows over a longer period or a larger valid fraction"
        )
    return TimeSplit(split, train, valid)


def require_times(timestamps: pd.Series) -> pd.Series:
    """The entity rows' times (UTC); ``ModelError`` naming the rows without one: the
    point-in-time join gives such a row no features, so neither training (which could not
    place it on either side of the split) nor scoring has anything to use."""
    import pandas as pd

    stamps = pd.to_datetime(timestamps, utc=True)
    missing = stamps.isna().to_numpy().nonzero()[0]
    if len(missing):
        raise ModelError(
            f"entity rows {missing[:5].tolist()} have no {ENTITY_TIMESTAMP} ({len(missing)} "
            "rows in all): a row without a time is neither before nor after a training "
            "split, and the point-in-time join gives it no features; give every row its "
            "time or drop it"
        )
    return stamps


def labels(frame: pd.DataFrame, label: str) -> np.ndarray:
    """The label column as 0/1 integers; ``ModelError`` unless it is present and binary."""
    import numpy as np

    if label not in frame.columns:
        raise ModelError(
            f"label column {label!r} is not in the entities; it has {list(frame.columns)}"
        )
    column = frame[label]
    if column.isna().any():
        rows = column.index[column.isna()].tolist()[:5]
        raise ModelError(f"label column {label!r} has nulls (rows {rows}); drop or label them")
    values = set(column.unique().tolist())
    if not values <= {0, 1}:  # True == 1 and False == 0, so bool labels pass
        shown = sorted(map(repr, values))[:10]
        raise ModelError(
            f"label column {label!r} is not binary: found values {', '.join(shown)}; "
            "a fraud label must be 0/1 or true/false"
        )
    return column.to_numpy(dtype=np.int8)


def feature_specs(manifest: TrainingSetManifest) -> list[FeatureSpec]:
    """The model's inputs: the training set's feature columns, in the order its manifest
    lists them (the service's order), with their declared dtypes."""
    return [FeatureSpec(ref=f.ref, column=f.column, dtype=f.dtype) for f in manifest.features]


def train(
    store: FeatureStore | str | os.PathLike[str],
    *,
    service: str,
    entities: pd.DataFrame | str | os.PathLike[str],
    label: str,
    out: str | os.PathLike[str],
    warm_start: ModelArtifact | str | os.PathLike[str] | None = None,
    num_boost_round: int = 200,
    valid_fraction: float = 0.2,
    params: Mapping[str, Any] | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> ModelArtifact:
    """Train a binary LightGBM model on ``service``'s features and write its artifact to ``out``.

    ``entities`` (anything ``get_historical_features`` reads: a DataFrame, a Parquet or CSV
    path, a folder of Parquet files...) holds the join keys, ``event_timestamp`` and the
    ``label`` column (0/1 or bool). The training set is built by the offline
    point-in-time join; rows before the split time train, the rest validate.

    ``warm_start`` continues boosting from a previous artifact (LightGBM ``init_model``) and
    reuses its category codes and hyperparameters; it is refused with ``ModelError`` naming
    the changed views unless the service's fingerprint still matches the parent's.
    ``params`` override LightGBM parameters (recorded, and inherited by warm starts);
    ``threads`` sets LightGBM's thread count for this run only (on a busy machine, 1 is often
    fastest); ``progress`` shows a progress bar on stderr.
    """
    if num_boost_round < 1:
        raise ModelError(f"num_boost_round must be at least 1, got {num_boost_round}")
    check_writable(out)  # before the minutes of training, not after
    store = open_store(store)
    state = store.state
    service_record = state.service_record(service)
    parent = _warm_start_parent(warm_start, service, state)
    data = build_training_set(store, service_record, entities, label, valid_fraction, parent)
    hyperparameters = {
        **(parent.metadata.hyperparameters["params"] if parent else DEFAULT_PARAMS),
        **(params or {}),
    }
    run_params = {**hyperparameters, **({"num_threads": threads} if threads else {})}
    booster, history = _fit(data, run_params, num_boost_round, parent, progress)
    metadata = ArtifactMetadata(
        feature_service=service,
        service_fingerprint=service_record.fingerprint,
        service_version=len(service_record.versions),
        views=tuple(trained_views(state, service)),
        features=tuple(data.features),
        label=label,
        entity_columns=data.entity_columns,
        timestamp_column=ENTITY_TIMESTAMP,
        as_of=AS_OF,
        split=_split_record(data.split, data.timestamps, valid_fraction),
        metrics=_metrics(history, data.y, data.split),
        hyperparameters={"params": hyperparameters, "num_boost_round": num_boost_round},
        num_trees=booster.num_trees(),
        library_versions=library_versions(),
        training_set=data.manifest,
        created_at=datetime.now(UTC).isoformat(),
        parent=_parent_record(parent),
    )
    return save(booster, metadata, out)


@dataclass(frozen=True)
class TrainingSet:
    """A training set ready for LightGBM: the model matrix, labels, split and provenance."""

    x: np.ndarray
    y: np.ndarray
    split: TimeSplit
    features: list[FeatureSpec]
    timestamps: pd.Series
    entity_columns: tuple[str, ...]
    manifest: TrainingSetManifest


def build_training_set(
    store: FeatureStore,
    service_record: ServiceRecord,
    entities: pd.DataFrame | str | os.PathLike[str],
    label: str,
    valid_fraction: float,
    parent: ModelArtifact | None,
) -> TrainingSet:
    """Join the service's features onto the labeled rows, split by time, encode the matrix.

    Category mappings are fitted on the training rows only (a warm start extends its
    parent's), so a value first seen after the split time is "unknown" in validation.
    """
    import pandas as pd

    service = service_record.service.name
    job = store.get_historical_features(
        entities, feature_service=service, full_feature_names=True, as_of=AS_OF
    )
    no_rows = ModelError(
        f"the entities{'' if isinstance(entities, pd.DataFrame) else f' ({entities})'} hold "
        "no rows: there is nothing to train on"
    )
    if job.entity_rows == 0:  # known before the join (an entity query's only after it)
        raise no_rows
    if label not in job.plan.entity_columns:  # checked before the join runs
        raise ModelError(
            f"label column {label!r} is not in the entities; it has {list(job.plan.entity_columns)}"
        )
    frame, manifest = job.to_df(), job.manifest
    if frame.empty:
        raise no_rows
    y = labels(frame, label)
    if manifest.feature_service is None or (
        manifest.feature_service.fingerprint != service_record.fingerprint
    ):
        raise ModelError(
            f"feature service {service!r} was applied again while its training set was being "
            "built; run the training again"
        )
    split = time_split(frame[ENTITY_TIMESTAMP], valid_fraction)
    for part, mask in (("training", split.train), ("validation", split.valid)):
        if len(set(y[mask].tolist())) < 2:
            raise ModelError(
                f"the {part} rows (split at {split.time.isoformat()}) hold only one label "
                f"value; both classes are needed; change --valid-fraction or add labeled rows"
            )
    _require_some_feature_value(frame[split.train], manifest, service)
    specs = feature_specs(manifest)
    if parent:
        # Trees address features by position: keep the parent's column order (a service may
        # list its views in another order without changing its fingerprint).
        position = {f.column: i for i, f in enumerate(parent.features)}
        if set(position) != {f.column for f in specs}:
            raise ModelError(
                f"cannot warm-start from {parent.path}: its feature columns "
                f"{sorted(position)} differ from the training set's {[f.column for f in specs]}"
            )
        specs.sort(key=lambda f: position[f.column])
    specs = fit_categories(frame[split.train], specs, parent.features if parent else ())
    return TrainingSet(
        x=build_matrix(frame, specs),
        y=y,
        split=split,
        features=specs,
        timestamps=frame[ENTITY_TIMESTAMP],
        entity_columns=job.plan.entity_columns,
        manifest=manifest,
    )


def _require_some_feature_value(
    train: pd.DataFrame, manifest: TrainingSetManifest, service: str
) -> None:
    """``ModelError`` when the point-in-time join gave the training rows no feature value at
    all: a model of only nulls is a constant, usually from entity times before the sources'
    data (a time zone or unit slip)."""
    columns = [f.column for f in manifest.features]
    if columns and not train[columns].notna().to_numpy().any():
        stamps = require_times(train[ENTITY_TIMESTAMP])
        raise ModelError(
            f"every feature of service {service!r} is null on all {len(train)} training "
            f"rows (entity times {stamps.min().isoformat()} .. {stamps.max().isoformat()}): "
            "the point-in-time join found no source row at or before those times within "
            "each view's ttl; check the entity timestamps (time zone, unit) against the "
            f"sources' event times{_CREATED_HINT if manifest.as_of == 'created' else ''}"
        )


_CREATED_HINT = (
    ", and against their created times: training joins as of created time, so a source row "
    "counts only from its created time on (rows created after every entity time, e.g. data "
    "loaded later with the load time as created time, are never seen)"
)


def _fit(
    data: TrainingSet,
    params: Mapping[str, Any],
    num_boost_round: int,
    parent: ModelArtifact | None,
    progress: bool,
) -> tuple[lgb.Booster, dict[str, Any]]:
    """Boost on the training rows, evaluating AUC and log loss on the validation rows."""
    import lightgbm as lgb

    train, valid = data.split.train, data.split.valid
    train_set = lgb.Dataset(
        data.x[train],
        data.y[train],
        feature_name=[s.column for s in data.features],
        categorical_feature=[i for i, s in enumerate(data.features) if s.is_categorical],
    )
    valid_set = train_set.create_valid(data.x[valid], data.y[valid])
    history: dict[str, Any] = {}
    with TrainingProgress(num_boost_round, enabled=progress) as advance:
        booster = lgb.train(
            dict(params),
            train_set,
            num_boost_round=num_boost_round,
            valid_sets=[valid_set],
            valid_names=["valid"],
            init_model=parent.booster if parent else None,
            callbacks=[lgb.record_evaluation(history), advance],
        )
    return booster, history


def _warm_start_parent(
    warm_start: ModelArtifact | str | os.PathLike[str] | None, service: str, state: RegistryState
) -> ModelArtifact | None:
    if warm_start is None:
        return None
    parent = warm_start if isinstance(warm_start, ModelArtifact) else load(warm_start)
    if parent.metadata.feature_service != service:
        raise ModelError(
            f"cannot warm-start from {parent.path}: it was trained on feature service "
            f"{parent.metadata.feature_service!r}, not {service!r}"
        )
    mismatch = parent.binding(state).mismatch()
    if mismatch is not None:
        raise ModelError(f"cannot warm-start from {parent.path}: {mismatch}")
    return parent


def _split_record(split: TimeSplit, timestamps: pd.Series, valid_fraction: float) -> dict[str, Any]:
    import pandas as pd

    stamps = pd.to_datetime(timestamps, utc=True)
    train, valid = stamps[split.train], stamps[split.valid]
    return {
        "time": split.time.isoformat(),
        "valid_fraction": valid_fraction,
        "train_rows": int(split.train.sum()),
        "valid_rows": int(split.valid.sum()),
        "train_start": train.min().isoformat(),
        "train_end": train.max().isoformat(),
        "valid_start": valid.min().isoformat(),
        "valid_end": valid.max().isoformat(),
    }


def _metrics(history: Mapping[str, Any], y: np.ndarray, split: TimeSplit) -> dict[str, float]:
    """Validation AUC and log loss (LightGBM's, after the last round) and the base rates."""
    import numpy as np

    base_rate = float(y[split.train].mean())
    y_valid = y[split.valid]
    # The log loss of always predicting the training base rate: what the model must beat.
    baseline = -float(np.mean(y_valid * np.log(base_rate) + (1 - y_valid) * np.log1p(-base_rate)))
    valid = history["valid"]
    return {
        "valid_auc": float(valid["auc"][-1]),
        "valid_log_loss": float(valid["binary_logloss"][-1]),
        "valid_base_rate": float(y_valid.mean()),
        "train_base_rate": base_rate,
        "valid_log_loss_of_base_rate": baseline,
    }


def _parent_record(parent: ModelArtifact | None) -> dict[str, Any] | None:
    if parent is None:
        return None
    return {
        "path": str(parent.path) if parent.path else None,
        "model_sha256": parent.metadata.model_sha256,
        "created_at": parent.metadata.created_at,
        "num_trees": parent.metadata.num_trees,
        "service_fingerprint": parent.metadata.service_fingerprint,
    }


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's input and output."""
    from importlib import metadata as importlib_metadata

    versions = {"python": platform.python_version()}
    for name in ("featurestore", "lightgbm", "numpy", "pandas", "pyarrow", "duckdb"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
