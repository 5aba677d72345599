"""Batch prediction: the training path's point-in-time join and matrix builder, then score."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from featurestore.errors import ModelError, OutputError
from featurestore.models.artifact import ModelArtifact, load
from featurestore.models.entities import open_store

if TYPE_CHECKING:
    import pandas as pd

    from featurestore.store import FeatureStore

PREDICTION_COLUMN = "prediction"


def predict(
    model: ModelArtifact | str | os.PathLike[str],
    store: FeatureStore | str | os.PathLike[str],
    entities: pd.DataFrame | str | os.PathLike[str],
) -> pd.DataFrame:
    """Score entity rows: every entity column and row in order, plus ``prediction``.

    ``entities``: anything ``get_historical_features`` reads (a DataFrame, a Parquet or CSV
    path, a folder of Parquet files...).

    Features come from the offline point-in-time join, exactly as in training (same service,
    same ``as_of``), and go through the same matrix builder. Refuses with ``ModelError``
    naming the changed views when the registry's fingerprint no longer matches the model's.
    """
    from featurestore.models.training import require_times
    from featurestore.offline.plan import ENTITY_TIMESTAMP

    artifact = model if isinstance(model, ModelArtifact) else load(model)
    store = open_store(store)
    artifact.binding(store.state).require()
    service = artifact.metadata.feature_service
    job = store.get_historical_features(
        entities,
        feature_service=service,
        full_feature_names=True,
        as_of=artifact.metadata.as_of,  # type: ignore[arg-type]  # recorded by training: "event" or "created"
    )
    if PREDICTION_COLUMN in job.plan.entity_columns:  # known before the join runs
        raise ModelError(
            f"entity column {PREDICTION_COLUMN!r} would be replaced by the scores, which "
            "keep every entity column beside them: rename it"
        )
    frame = job.to_df()
    require_times(frame[ENTITY_TIMESTAMP])
    scored = frame[list(job.plan.entity_columns)].copy()
    scored[PREDICTION_COLUMN] = artifact.predict_features(frame)
    return scored


def predict_batch(
    model: ModelArtifact | str | os.PathLike[str],
    store: FeatureStore | str | os.PathLike[str],
    entities: pd.DataFrame | str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> pd.DataFrame:
    """``predict`` and write the result to the Parquet file ``out``.

    The file's schema metadata names the model (its checksum) and the feature service
    fingerprint the scores were made with.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featurestore.outputs import check_not_read, check_writable
    from featurestore.training import read_by_run

    path = check_writable(out, "scores")  # checked before any work
    store = open_store(store)
    check_not_read(path, read_by_run(store.state, store.repo_path, entities), "scores")
    artifact = model if isinstance(model, ModelArtifact) else load(model)
    scored = predict(artifact, store, entities)
    table = pa.Table.from_pandas(scored, preserve_index=False)
    provenance = {
        b"featurestore.model_sha256": artifact.metadata.model_sha256.encode(),
        b"featurestore.feature_service": artifact.metadata.feature_service.encode(),
        b"featurestore.service_fingerprint": artifact.metadata.service_fingerprint.encode(),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **provenance})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    except OSError as exc:
        raise OutputError(f"cannot write the scores to {path}: {exc}") from None
    return scored
