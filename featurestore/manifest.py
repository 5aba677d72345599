"""The training-set manifest: what a training set was built from, typed and versioned.

``TrainingSetManifest.to_json()`` is the JSON written beside a training set
(``<path>.manifest.json``) and embedded in a model artifact; ``from_json`` reads it back
and refuses a ``schema_version`` it does not know. The JSON (schema version 1)::

    {"schema_version": 1,
     "feature_service": {"name": ..., "fingerprint": ...} | null,
     "features": [{"ref": "view:feature", "column": ..., "dtype": "Int64",
                   "projection_fingerprint": ...}, ...],          # output order
     "entity_columns": [...], "as_of": "event" | "created", "full_feature_names": bool,
     "row_count": int, "entity_time_range": {"min": iso | null, "max": iso | null},
     "sources": [{"view", "path", "size", "modified_at", "row_count"}          # a Parquet file
                 | {"view", "table", "modified_at", "row_count", "bytes"}      # a BigQuery table
                 | {"view", "query"}, ...],                                    # a BigQuery query
     "engine": {"name", "version"[, "project", "location"]},
     "versions": {"featurestore", "pyarrow", "duckdb"}, "created_at": iso | null}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from featurestore.errors import RetrievalError

MANIFEST_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ServiceRef:
    """A feature service as it was applied: its name and fingerprint."""

    name: str
    fingerprint: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "fingerprint": self.fingerprint}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceRef:
        return cls(name=data["name"], fingerprint=data["fingerprint"])


@dataclass(frozen=True)
class ManifestFeature:
    """One feature column of a training set, in output order."""

    ref: str  # "view:feature"
    column: str
    dtype: str
    projection_fingerprint: str

    def to_json(self) -> dict[str, str]:
        return {
            "ref": self.ref,
            "column": self.column,
            "dtype": self.dtype,
            "projection_fingerprint": self.projection_fingerprint,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ManifestFeature:
        return cls(data["ref"], data["column"], data["dtype"], data["projection_fingerprint"])


@dataclass(frozen=True)
class FileFingerprint:
    """A Parquet file a view read, as it was when the training set was planned."""

    view: str
    path: str
    size: int
    modified_at: str
    row_count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "path": self.path,
            "size": self.size,
            "modified_at": self.modified_at,
            "row_count": self.row_count,
        }


@dataclass(frozen=True)
class TableFingerprint:
    """A BigQuery table a view read: its last modification, rows and bytes at planning."""

    view: str
    table: str
    modified_at: str | None
    row_count: int | None
    bytes: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "table": self.table,
            "modified_at": self.modified_at,
            "row_count": self.row_count,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class QueryFingerprint:
    """A BigQuery query a view read, as text (its result has no stable fingerprint)."""

    view: str
    query: str

    def to_json(self) -> dict[str, Any]:
        return {"view": self.view, "query": self.query}


SourceFingerprint = FileFingerprint | TableFingerprint | QueryFingerprint


def source_from_json(data: Mapping[str, Any]) -> SourceFingerprint:
    """A source record read back: the kind is told by its ``path``/``table``/``query`` key."""
    if "path" in data:
        return FileFingerprint(
            data["view"], data["path"], data["size"], data["modified_at"], data["row_count"]
        )
    if "table" in data:
        return TableFingerprint(
            data["view"], data["table"], data["modified_at"], data["row_count"], data["bytes"]
        )
    return QueryFingerprint(data["view"], data["query"])


@dataclass(frozen=True)
class EngineInfo:
    """The offline engine that built a training set (``project``/``location``: BigQuery's)."""

    name: str
    version: str
    project: str | None = None
    location: str | None = None

    def to_json(self) -> dict[str, str]:
        found = {"name": self.name, "version": self.version}
        if self.project is not None:
            found["project"] = self.project
        if self.location is not None:
            found["location"] = self.location
        return found

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EngineInfo:
        return cls(data["name"], data["version"], data.get("project"), data.get("location"))


@dataclass(frozen=True)
class TrainingSetManifest:
    """What a training set was built from (the module docstring shows its JSON).

    ``feature_service`` is None for a list of feature references; ``entity_time_min`` and
    ``entity_time_max`` are ISO-8601 UTC (None without entity rows); ``created_at`` is
    when the join ran.
    """

    feature_service: ServiceRef | None
    features: tuple[ManifestFeature, ...]
    entity_columns: tuple[str, ...]
    as_of: str
    full_feature_names: bool
    row_count: int
    entity_time_min: str | None
    entity_time_max: str | None
    sources: tuple[SourceFingerprint, ...]
    engine: EngineInfo
    versions: Mapping[str, str]
    created_at: str | None
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "feature_service": None
            if self.feature_service is None
            else self.feature_service.to_json(),
            "features": [f.to_json() for f in self.features],
            "entity_columns": list(self.entity_columns),
            "as_of": self.as_of,
            "full_feature_names": self.full_feature_names,
            "row_count": self.row_count,
            "entity_time_range": {"min": self.entity_time_min, "max": self.entity_time_max},
            "sources": [s.to_json() for s in self.sources],
            "engine": self.engine.to_json(),
            "versions": dict(self.versions),
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingSetManifest:
        """Read a manifest's JSON; ``RetrievalError`` for a version or shape it does not know."""
        version = data.get("schema_version") if isinstance(data, Mapping) else None
        if version != MANIFEST_SCHEMA_VERSION:
            raise RetrievalError(
                f"training-set manifest schema_version {version!r} is not "
                f"{MANIFEST_SCHEMA_VERSION}, the one this featurestore reads; rebuild the "
                "training set with this version"
            )
        try:
            service = data["feature_service"]
            times = data["entity_time_range"]
            return cls(
                feature_service=None if service is None else ServiceRef.from_json(service),
                features=tuple(ManifestFeature.from_json(f) for f in data["features"]),
                entity_columns=tuple(data["entity_columns"]),
                as_of=data["as_of"],
                full_feature_names=data["full_feature_names"],
                row_count=data["row_count"],
                entity_time_min=times["min"],
                entity_time_max=times["max"],
                sources=tuple(source_from_json(s) for s in data["sources"]),
                engine=EngineInfo.from_json(data["engine"]),
                versions=dict(data["versions"]),
                created_at=data["created_at"],
                schema_version=version,
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise RetrievalError(
                f"training-set manifest is malformed ({type(exc).__name__}: {exc}); rebuild it"
            ) from None
