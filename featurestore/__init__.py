"""featurestore: the features a model is trained on are the features it is served.

Define features in Python (Feast-shaped), build point-in-time-correct training sets,
materialize the latest values online, and serve them with parity proven.
"""

from featurestore.definitions import (
    Aggregation,
    BigQuerySource,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    FileSource,
    PushSource,
)
from featurestore.errors import (
    ConfigError,
    DefinitionError,
    FeatureStoreError,
    MaterializationError,
    MaterializedAheadError,
    ModelError,
    ModelNotServable,
    OfflineStoreUnavailable,
    OnlineStoreError,
    OnlineStoreUnavailable,
    OutputError,
    PushError,
    RegistryError,
    ReportError,
    RetrievalError,
    SchemaMismatchError,
    SkippedRowsWarning,
    TooManyEntitiesError,
    TransformationError,
    UnknownFeatureError,
    UnknownPushSourceError,
)
from featurestore.on_demand import OnDemandFeatureView, RequestSource, on_demand_feature_view
from featurestore.push_mode import PushMode
from featurestore.store import FeatureStore
from featurestore.types import Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp
from featurestore.unsupported import (
    ConflictPolicy,
    FileLoggingDestination,
    LabelView,
    LoggingConfig,
    Project,
)

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "BigQuerySource",
    "Bool",
    "ConfigError",
    "ConflictPolicy",
    "DefinitionError",
    "Entity",
    "FeatureService",
    "FeatureStore",
    "FeatureStoreError",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FileLoggingDestination",
    "FileSource",
    "Float32",
    "Float64",
    "Int32",
    "Int64",
    "LabelView",
    "LoggingConfig",
    "MaterializationError",
    "MaterializedAheadError",
    "ModelError",
    "ModelNotServable",
    "OfflineStoreUnavailable",
    "OnDemandFeatureView",
    "OnlineStoreError",
    "OnlineStoreUnavailable",
    "OutputError",
    "Project",
    "PushError",
    "PushMode",
    "PushSource",
    "RegistryError",
    "ReportError",
    "RequestSource",
    "RetrievalError",
    "SchemaMismatchError",
    "SkippedRowsWarning",
    "String",
    "TooManyEntitiesError",
    "TransformationError",
    "UnixTimestamp",
    "UnknownFeatureError",
    "UnknownPushSourceError",
    "on_demand_feature_view",
]
