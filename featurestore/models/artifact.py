"""The model artifact: a folder with the LightGBM model as text and ``metadata.json``.

::

    artifacts/fraud_v1/
      model.txt       LightGBM's own text format (never pickle)
      metadata.json   the binding (service, fingerprints, views), the ordered features with
                      dtypes and category mappings, the split, metrics, label, hyperparameters,
                      library versions, the training-set manifest, the parent (warm start),
                      the model file's sha256 and the checksums of the metadata itself

Loading accepts only the folder's own ``model.txt`` (``model_file`` cannot point elsewhere)
and verifies, before anything is used: each prediction-relevant part of the metadata against
its checksum (``metadata_sha256``: the feature order, dtypes and category mappings; the
binding; the model file's name, checksum and tree count), then the model file against its
checksum, from the same bytes it parses. An edit to any of them is a ``ModelError`` naming
the part. These are checksums, not signatures: they catch edits and corruption, not a forger
who recomputes them. The other parts (split, metrics, versions, manifest) are descriptive.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.errors import ModelError
from featurestore.manifest import TrainingSetManifest
from featurestore.models.binding import Binding, TrainedView, check_binding
from featurestore.models.matrix import FeatureSpec, build_matrix
from featurestore.outputs import check_writable as check_output

if TYPE_CHECKING:
    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from featurestore.registry_state import RegistryState

MODEL_FILE = "model.txt"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 2  # 2: metadata checksums; model_file is always MODEL_FILE

COVERED_PARTS = {
    "features": "the feature order, dtypes and category mappings",
    "binding": "the feature binding (service, fingerprints, views, as_of)",
    "model": "the model file's name, checksum and tree count",
}
"""The parts of ``metadata.json`` that change predictions, each covered by a checksum."""


@dataclass(frozen=True)
class ArtifactMetadata:
    """Everything ``metadata.json`` records about a trained model.

    ``split`` holds the split time (ISO, UTC) and the rows and time range on each side;
    ``metrics`` the validation AUC, log loss and base rate (and the training base rate);
    ``parent`` the warm-start parent's path, checksum and tree count, or None.
    """

    feature_service: str
    service_fingerprint: str
    service_version: int
    views: tuple[TrainedView, ...]
    features: tuple[FeatureSpec, ...]
    label: str
    entity_columns: tuple[str, ...]
    timestamp_column: str
    as_of: str
    split: dict[str, Any]
    metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    num_trees: int
    library_versions: dict[str, str]
    training_set: TrainingSetManifest
    created_at: str
    parent: dict[str, Any] | None = None
    model_sha256: str = ""
    model_file: str = MODEL_FILE
    format_version: int = FORMAT_VERSION
    metadata_sha256: dict[str, str] = field(default_factory=dict)

    def covered(self) -> dict[str, Any]:
        """The prediction-relevant content, by part (see ``COVERED_PARTS``)."""
        return {
            "features": [f.to_json() for f in self.features],
            "binding": {
                "feature_service": self.feature_service,
                "service_fingerprint": self.service_fingerprint,
                "service_version": self.service_version,
                "views": [v.to_json() for v in self.views],
                "entity_columns": list(self.entity_columns),
                "timestamp_column": self.timestamp_column,
                "as_of": self.as_of,
            },
            "model": {
                "model_file": self.model_file,
                "model_sha256": self.model_sha256,
                "num_trees": self.num_trees,
            },
        }

    def checksums(self) -> dict[str, str]:
        """sha256 of each covered part's canonical JSON (sorted keys, no spaces)."""
        return {
            part: hashlib.sha256(
                json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
            for part, content in self.covered().items()
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "created_at": self.created_at,
            "feature_service": self.feature_service,
            "service_fingerprint": self.service_fingerprint,
            "service_version": self.service_version,
            "views": [v.to_json() for v in self.views],
            "features": [f.to_json() for f in self.features],
            "label": self.label,
            "entity_columns": list(self.entity_columns),
            "timestamp_column": self.timestamp_column,
            "as_of": self.as_of,
            "split": self.split,
            "metrics": self.metrics,
            "hyperparameters": self.hyperparameters,
            "num_trees": self.num_trees,
            "library_versions": self.library_versions,
            "training_set": self.training_set.to_json(),
            "parent": self.parent,
            "model_file": self.model_file,
            "model_sha256": self.model_sha256,
            "metadata_sha256": dict(self.metadata_sha256),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArtifactMetadata:
        return cls(
            format_version=data["format_version"],
            created_at=data["created_at"],
            feature_service=data["feature_service"],
            service_fingerprint=data["service_fingerprint"],
            service_version=data["service_version"],
            views=tuple(TrainedView.from_json(v) for v in data["views"]),
            features=tuple(FeatureSpec.from_json(f) for f in data["features"]),
            label=data["label"],
            entity_columns=tuple(data["entity_columns"]),
            timestamp_column=data["timestamp_column"],
            as_of=data["as_of"],
            split=dict(data["split"]),
            metrics=dict(data["metrics"]),
            hyperparameters=dict(data["hyperparameters"]),
            num_trees=data["num_trees"],
            library_versions=dict(data["library_versions"]),
            training_set=TrainingSetManifest.from_json(data["training_set"]),
            parent=data.get("parent"),
            model_file=data["model_file"],
            model_sha256=data["model_sha256"],
            metadata_sha256=dict(data["metadata_sha256"]),
        )


@dataclass
class ModelArtifact:
    """A trained model with its metadata; ``load(path)`` reads one, ``train`` makes one."""

    metadata: ArtifactMetadata
    booster: lgb.Booster
    path: Path | None = None

    @property
    def features(self) -> tuple[FeatureSpec, ...]:
        """The model's input columns, in order, with dtypes and category mappings."""
        return self.metadata.features

    def binding(self, state: RegistryState) -> Binding:
        """Whether the registry still defines the features this model was trained on."""
        m = self.metadata
        return check_binding(m.feature_service, m.service_fingerprint, m.views, state)

    def predict_features(
        self, frame: pd.DataFrame | pa.Table | Mapping[str, Sequence[Any]]
    ) -> np.ndarray:
        """Probabilities of the positive label for a frame holding the feature columns."""
        import numpy as np

        return np.asarray(self.booster.predict(build_matrix(frame, self.features)))


def model_checksum(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


_THREADS = re.compile(rb"^\[num_threads: \d+\]$", re.MULTILINE)


def model_text(booster: lgb.Booster) -> bytes:
    """The model file: LightGBM's text, with the thread count of the run that trained it
    written as 0 (LightGBM's default: every core) in its parameters section.

    The file's sha256 is the model's identity (reports' ``--model``, the feature log). With
    ``deterministic=True`` (the default parameters) LightGBM grows the same trees whatever
    its thread count (measured: 1, 2, 4 and all cores give byte-equal trees), but records
    the count among the parameters, so retraining on identical data, parameters and seed on
    another machine (or with ``--threads``) made another identity for the same model. The
    count changes how fast a model trains, never what it predicts.
    """
    return _THREADS.sub(b"[num_threads: 0]", booster.model_to_string().encode())


def save(
    booster: lgb.Booster, metadata: ArtifactMetadata, out: str | os.PathLike[str]
) -> ModelArtifact:
    """Write ``model.txt`` then ``metadata.json`` (with the checksums) into ``out``.

    Each file is written to a temporary name and renamed, so a reader never sees half a file.
    ``ModelError`` when the folder cannot be written.
    """
    from dataclasses import replace

    folder = check_writable(out)
    text = model_text(booster)
    metadata = replace(metadata, model_sha256=model_checksum(text), model_file=MODEL_FILE)
    metadata = replace(metadata, metadata_sha256=metadata.checksums())
    body = json.dumps(metadata.to_json(), indent=2, sort_keys=True, default=str)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / MODEL_FILE, text)
        _write_atomically(folder / METADATA_FILE, body.encode())
    except OSError as exc:
        raise ModelError(f"cannot write the model artifact to {folder}: {exc}") from None
    return ModelArtifact(metadata, booster, folder)


def check_writable(out: str | os.PathLike[str]) -> Path:
    """``out`` as a Path, or ``ModelError`` when the artifact folder cannot be written there
    (``outputs.check_writable``: creates nothing). Training calls it first, so an unwritable
    ``--out`` fails before the training set is built."""
    return check_output(out, "model artifact", folder=True, error=ModelError)


def load(path: str | os.PathLike[str]) -> ModelArtifact:
    """Read a model artifact folder, verifying its metadata and model file (module docstring).

    Raises ``ModelError`` when the folder, its metadata or its model file is missing or
    unreadable, when ``model_file`` names another file than the folder's ``model.txt``, or
    when a covered part of the metadata or the model file does not match its checksum.
    """
    import lightgbm as lgb

    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"no model artifact at {folder}: the folder does not exist")
    meta_path = folder / METADATA_FILE
    if not meta_path.exists():
        raise ModelError(
            f"{folder} has no {METADATA_FILE}: it is not a model artifact written by "
            "'featurestore train' (a bare LightGBM file carries no feature binding)"
        )
    metadata = _read_metadata(meta_path)
    model_path = folder / MODEL_FILE
    try:
        text = model_path.read_bytes()
    except OSError as exc:
        raise ModelError(f"model file {model_path} cannot be read: {exc}") from None
    actual = model_checksum(text)
    if actual != metadata.model_sha256:
        raise ModelError(
            f"model file {model_path} does not match the checksum in {METADATA_FILE} "
            f"(recorded sha256 {metadata.model_sha256[:12]}..., file has {actual[:12]}...): "
            "it was modified after training; restore it or retrain"
        )
    try:
        booster = lgb.Booster(model_str=text.decode())
    except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
        raise ModelError(f"model file {model_path} is not a LightGBM model: {exc}") from None
    return ModelArtifact(metadata, booster, folder)


def _read_metadata(path: Path) -> ArtifactMetadata:
    """``metadata.json``, refused unless its model file is the artifact's own and every
    covered part matches its checksum (ModelError naming the part)."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise TypeError(f"a JSON object was expected, not {type(data).__name__}")
        if data.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{path}: format version {data.get('format_version')!r} is not "
                f"{FORMAT_VERSION}; retrain the model with this version of featurestore"
            )
        metadata = ArtifactMetadata.from_json(data)
        expected = metadata.checksums()
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # json's and the records' errors on a truncated or hand-edited file
        raise ModelError(f"{path} is unreadable or incomplete: {exc!r}") from None
    if metadata.model_file != MODEL_FILE:
        raise ModelError(
            f"{path}: model_file {metadata.model_file!r} is not {MODEL_FILE!r}; an artifact "
            "only reads its own model file"
        )
    for part, what in COVERED_PARTS.items():
        if metadata.metadata_sha256.get(part) != expected[part]:
            raise ModelError(
                f"{path}: {what} do not match their checksum (metadata_sha256.{part}): the "
                "file was edited after training; restore it or retrain"
            )
    return metadata


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
