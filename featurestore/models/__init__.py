"""Models bound to their features: LightGBM training, the artifact, batch prediction.

::

    from featurestore import models

    artifact = models.train("feature_repo", service="fraud_v1", entities="labeled.parquet",
                            label="is_fraud", out="artifacts/fraud_v1")
    artifact = models.load("artifacts/fraud_v1")          # verifies the model's checksum
    scored = models.predict(artifact, "feature_repo", entities_df)
    print(models.describe(artifact, "feature_repo").binding.matches)

An artifact records the feature service's fingerprint and each view's projection
fingerprint; prediction refuses a model whose fingerprint the registry no longer matches.
``build_matrix`` is the only way model input is built (training, batch and online scoring).
"""

from featurestore.models.artifact import ArtifactMetadata, ModelArtifact, load
from featurestore.models.binding import Binding, TrainedView, ViewChange
from featurestore.models.description import ModelDescription, describe
from featurestore.models.matrix import UNKNOWN_CODE, FeatureSpec, build_matrix
from featurestore.models.prediction import predict, predict_batch
from featurestore.models.training import train

__all__ = [
    "UNKNOWN_CODE",
    "ArtifactMetadata",
    "Binding",
    "FeatureSpec",
    "ModelArtifact",
    "ModelDescription",
    "TrainedView",
    "ViewChange",
    "build_matrix",
    "describe",
    "load",
    "predict",
    "predict_batch",
    "train",
]
