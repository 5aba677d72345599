"""featurestore: the features a model is trained on are the features it is served.

Define features in Python (Feast-shaped), build point-in-time-correct training sets,
materialize the latest values online, and serve them with parity proven.
"""

from featurestore.definitions import (
    BigQuerySource,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    FileSource,
)
from featurestore.errors import (
    ConfigError,
    DefinitionError,
    FeatureStoreError,
    MaterializationError,
    ModelError,
    ModelNotServable,
    OfflineStoreUnavailable,
    OnlineStoreError,
    OnlineStoreUnavailable,
    OutputError,
    RegistryError,
    ReportError,
    RetrievalError,
    SchemaMismatchError,
    SkippedRowsWarning,
    TooManyEntitiesError,
    UnknownFeatureError,
)
from featurestore.store import FeatureStore
from featurestore.types import Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp

__version__ = "0.1.0"

__all__ = [
    "BigQuerySource",
    "Bool",
    "ConfigError",
    "DefinitionError",
    "Entity",
    "FeatureService",
    "FeatureStore",
    "FeatureStoreError",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FileSource",
    "Float32",
    "Float64",
    "Int32",
    "Int64",
    "MaterializationError",
    "ModelError",
    "ModelNotServable",
    "OfflineStoreUnavailable",
    "OnlineStoreError",
    "OnlineStoreUnavailable",
    "OutputError",
    "RegistryError",
    "ReportError",
    "RetrievalError",
    "SchemaMismatchError",
    "SkippedRowsWarning",
    "String",
    "TooManyEntitiesError",
    "UnixTimestamp",
    "UnknownFeatureError",
]
