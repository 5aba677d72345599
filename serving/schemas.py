"""Request and response bodies (pydantic). Responses are encoded by serving/encoding.py; the
response models here document them in ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ENTITIES_DOC = (
    "Join key columns: key name -> one value per entity row, all the same length. Keys are "
    "typed as their views declare them: 1 and '1' are different keys. Request fields that "
    "on-demand views read go here too, by name (cast to their declared dtypes)."
)


class OnlineFeaturesRequest(BaseModel):
    """Feast's ``/get-online-features`` body: ``features`` or ``feature_service``, and entities."""

    model_config = ConfigDict(extra="forbid")

    features: list[str] = Field(default_factory=list, description="'view:feature' references.")
    feature_service: str | None = Field(default=None, description="A feature service's name.")
    entities: dict[str, list[Any]] = Field(description=ENTITIES_DOC)
    full_feature_names: bool = Field(
        default=False, description="Name feature columns 'view__feature'."
    )
    include_feature_view_version_metadata: bool = Field(
        default=False, description="Accepted for Feast's clients; ignored."
    )


class PredictRequest(BaseModel):
    """Entity rows to score with the served model."""

    model_config = ConfigDict(extra="forbid")

    entities: dict[str, list[Any]] = Field(description=ENTITIES_DOC)
    include_features: bool = Field(
        default=False,
        description="Also return the feature vector scored, with statuses (Feast's shape).",
    )


class PushRequest(BaseModel):
    """Feast's ``/push`` body: rows (column -> values) into a push source's views."""

    model_config = ConfigDict(extra="forbid")

    push_source_name: str = Field(description="The push source's name.")
    df: dict[str, list[Any]] = Field(
        description="Columns -> one value per row: the views' join keys and features, the "
        "event time (ISO 8601 string; naive means UTC) and optionally the created time."
    )
    to: str = Field(
        default="online",
        description="'online' (Feast's default), 'offline' or 'online_and_offline'.",
    )
    allow_registry_cache: bool = Field(
        default=True,
        description="Accepted for Feast's clients; the registry is re-read when it changes.",
    )
    transform_on_write: bool = Field(
        default=True,
        description="Accepted for Feast's clients; no transformation runs on write here.",
    )


class PushResponse(BaseModel):
    push_source_name: str
    to: str
    rows: int = Field(description="Rows pushed.")
    views: list[str] = Field(description="The feature views that got them.")
    online_written: dict[str, int] = Field(
        description="Per view, entity rows the online write changed (an older row is kept)."
    )


class FeatureColumn(BaseModel):
    values: list[Any]
    statuses: list[str]
    event_timestamps: list[str]


class ResponseMetadata(BaseModel):
    feature_names: list[str]


class OnlineFeaturesResponse(BaseModel):
    """Feast's answer: join keys first, then each feature, column by column. NaN and
    infinities are the strings "NaN", "Infinity", "-Infinity"."""

    metadata: ResponseMetadata
    results: list[FeatureColumn]


class PredictResponse(BaseModel):
    request_id: str = Field(description="Also in the X-Request-ID header; the log records it.")
    model: str
    model_fingerprint: str = Field(description="The feature-service fingerprint it is bound to.")
    model_sha256: str
    predictions: list[float]
    features: OnlineFeaturesResponse | None = None


class ErrorResponse(BaseModel):
    detail: str = Field(description="What is wrong, in one line, and what to do.")
    error: str = Field(description="The error's class, e.g. RetrievalError.")


class Problem(BaseModel):
    check: str
    detail: str


class ReadyResponse(BaseModel):
    ready: bool
    model: str
    model_fingerprint: str
    problems: list[Problem]
    views: dict[str, str | None] = Field(description="Each view's materialized end (UTC).")
