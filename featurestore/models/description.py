"""What a model artifact was trained on, and whether the registry still agrees, as text."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from featurestore.models.artifact import ModelArtifact, load
from featurestore.models.binding import Binding
from featurestore.models.entities import open_store

if TYPE_CHECKING:
    from featurestore.store import FeatureStore


@dataclass(frozen=True)
class ModelDescription:
    """A loaded artifact and its binding against a repo's registry."""

    artifact: ModelArtifact
    binding: Binding

    def trained_lines(self) -> list[str]:
        """What the model was trained on: service, views, features, split, metrics, parent."""
        m = self.artifact.metadata
        split, metrics = m.split, m.metrics
        lines = [
            f"model {self.artifact.path} ({m.num_trees} trees, sha256 {m.model_sha256[:12]})",
            f"trained {m.created_at} on feature service {m.feature_service} "
            f"(version {m.service_version}, fingerprint {m.service_fingerprint[:12]}), "
            f"label {m.label}, as_of={m.as_of}",
        ]
        for view in m.views:
            lines.append(
                f"  view {view.name} version {view.view_version} "
                f"(projection fingerprint {view.projection_fingerprint[:12]}): "
                + ", ".join(view.features)
            )
        lines.append("features (model column order):")
        for i, spec in enumerate(m.features):
            cats = f", {len(spec.categories)} categories" if spec.categories is not None else ""
            lines.append(f"  {i:>3} {spec.ref} ({spec.dtype}{cats})")
        lines += [
            f"split at {split['time']}: train {split['train_rows']} rows "
            f"[{split['train_start']} .. {split['train_end']}], "
            f"validate {split['valid_rows']} rows [{split['valid_start']} .. {split['valid_end']}]",
            f"validation AUC {metrics['valid_auc']:.4f}, log loss {metrics['valid_log_loss']:.4f} "
            f"(base-rate predictor {metrics['valid_log_loss_of_base_rate']:.4f}), "
            f"base rate {metrics['valid_base_rate']:.4f}",
        ]
        if m.parent:
            lines.append(
                f"warm-started from {m.parent['path']} (sha256 {m.parent['model_sha256'][:12]}, "
                f"{m.parent['num_trees']} trees)"
            )
        versions = ", ".join(f"{k} {v}" for k, v in sorted(m.library_versions.items()))
        lines.append(f"libraries: {versions}")
        return lines

    def binding_lines(self) -> list[str]:
        """Whether the fingerprint still matches; if not, which views changed and how."""
        b = self.binding
        if b.matches:
            lines = [f"fingerprint matches the registry ({b.current_fingerprint[:12]})"]  # type: ignore[index]  # matches implies a current fingerprint
        elif b.current_fingerprint is None:
            lines = [f"MISMATCH: feature service {b.service} is no longer applied"]
        else:
            lines = [
                f"MISMATCH: feature service {b.service} fingerprint "
                f"{b.trained_fingerprint[:12]} (trained) != {b.current_fingerprint[:12]} (registry)"
            ]
        for change in b.changes:
            lines.append(f"  {change.describe()}")
            lines += [f"    {detail}" for detail in change.details]
            lines += [f"    registry {entry}" for entry in change.history]
        lines += [f"  note: {note}" for note in b.notes]
        return lines


def describe(
    model: ModelArtifact | str | os.PathLike[str], store: FeatureStore | str | os.PathLike[str]
) -> ModelDescription:
    """Load ``model`` (verifying its checksum) and compare its binding with ``store``'s registry."""
    artifact = model if isinstance(model, ModelArtifact) else load(model)
    return ModelDescription(artifact, artifact.binding(open_store(store).state))
