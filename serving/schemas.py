"""Request and response bodies (pydantic). Responses are encoded by serving/encoding.py; the
response models here document them in ``/openapi.json``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from featurestore.types import FUTURE_ALLOWANCE, MAX_TIME, MIN_TIME

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


TIME_DOC = "ISO 8601 (naive means UTC), e.g. '2026-11-30T00:00:00Z'."


def _utc(value: datetime | None) -> datetime | None:
    """A time as aware UTC, naive meaning UTC (the store's rule for every time it is given);
    ValueError outside the range the store accepts."""
    if value is None:
        return None
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not MIN_TIME <= utc <= MAX_TIME:
        raise ValueError(
            f"{utc.isoformat()} is outside the accepted time range {MIN_TIME.isoformat()} .. "
            f"{MAX_TIME.isoformat()}"
        )
    return utc


class _MaterializeBody(BaseModel):
    """What Feast's two materialization bodies share."""

    model_config = ConfigDict(extra="forbid")

    feature_views: list[str] | None = Field(
        default=None, description="The views to materialize; all online views when omitted."
    )
    full_feature_names: bool = Field(
        default=False, description="Accepted for Feast's clients; it changes nothing here."
    )
    version: None = Field(
        default=None,
        description="Feast's feature view versioning, which this store does not have: "
        "only null is accepted.",
    )

    @field_validator("start_ts", "end_ts", check_fields=False)
    @classmethod
    def _utc_in_range(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @field_validator("end_ts", check_fields=False)
    @classmethod
    def _not_after_now(cls, value: datetime | None) -> datetime | None:
        now = datetime.now(UTC)
        if value is not None and value > now + FUTURE_ALLOWANCE:
            raise ValueError(
                f"{value.isoformat()} is after the current time {now.isoformat()}: rows would "
                "be served before they happen; materialize up to now"
            )
        return value


class MaterializeRequest(_MaterializeBody):
    """Feast's ``/materialize`` body: write online the latest row per entity key with
    ``start_ts <= event time <= end_ts``."""

    start_ts: datetime | None = Field(default=None, description=TIME_DOC)
    end_ts: datetime | None = Field(default=None, description=TIME_DOC)
    disable_event_timestamp: bool = Field(
        default=False,
        description="Feast's 'everything up to now': start at 1970-01-01, end now "
        "(start_ts and end_ts are then ignored).",
    )

    @model_validator(mode="after")
    def _window(self) -> MaterializeRequest:
        if self.disable_event_timestamp:
            return self
        if self.start_ts is None or self.end_ts is None:
            raise ValueError(
                "start_ts and end_ts are required (or disable_event_timestamp: true for "
                "everything up to now)"
            )
        if self.end_ts < self.start_ts:
            raise ValueError(
                f"end_ts {self.end_ts.isoformat()} is before start_ts "
                f"{self.start_ts.isoformat()} (both ends are inclusive)"
            )
        return self


class MaterializeIncrementalRequest(_MaterializeBody):
    """Feast's ``/materialize-incremental`` body: write what arrived since each view's last
    run (late rows included), up to ``end_ts``."""

    end_ts: datetime = Field(description=TIME_DOC)


class MaterializedView(BaseModel):
    view: str
    start: str | None = Field(description="The window's start (UTC); null: from the beginning.")
    end: str = Field(description="The window's end (UTC).")
    watermark_end: str = Field(
        description="The view's materialized end after the run (UTC): the later of this end "
        "and the one before (a watermark never moves back)."
    )
    rows_read: int
    rows_written: int = Field(description="Rows (or tiles) the write changed.")
    seconds: float


class MaterializeResponse(BaseModel):
    """A synchronous run's outcome."""

    feature_views: list[MaterializedView]
    skipped: list[str] = Field(description="Views declared online=False.")


class MaterializeAccepted(BaseModel):
    """``?async=true``: the run started in the background (Feast's 202 body)."""

    status: Literal["accepted"] = "accepted"
    feature_views: list[str]


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
