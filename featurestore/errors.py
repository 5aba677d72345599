"""The error hierarchy. Every error the library raises on purpose is a ``FeatureStoreError``.

::

    FeatureStoreError
    ├── DefinitionError        a definition is invalid, or a repo's definitions disagree
    ├── ConfigError            featurestore.yaml is missing or wrong
    ├── RegistryError          the registry file is missing, unreadable or not applied
    ├── SchemaMismatchError    a source's columns do not match the declared schema
    ├── RetrievalError         a historical or online request is malformed
    │   ├── UnknownFeatureError    a feature reference names nothing that was applied
    │   ├── TooManyEntitiesError   a request holds more entity rows than the limit
    │   └── MaterializedAheadError an aggregated view is materialized past the read's now
    ├── OnlineStoreError       the online store failed
    │   └── OnlineStoreUnavailable the configured online store does not answer
    ├── OfflineStoreUnavailable    the configured offline engine cannot be reached
    ├── OutputError            an output file (training set, scores) cannot be written
    ├── MaterializationError   a materialization run failed (watermarks did not move)
    ├── ReportError            a report cannot be built from its inputs (empty log, ...)
    ├── TransformationError    a request-time transformation raised, or returned columns or
    │                          values that do not fit its schema (names the view)
    ├── PushError              a push was refused (bad rows, unknown source): nothing written
    │   └── UnknownPushSourceError no applied feature view reads that push source
    └── ModelError             a model artifact is missing, tampered with or mismatched
        └── ModelNotServable       the model cannot be served now (binding, materialization)

Warnings: ``SkippedRowsWarning`` (source rows with a null key or event time were skipped,
and counted).

This module imports no web framework: the HTTP layer maps these to status codes.
"""

from __future__ import annotations


class FeatureStoreError(Exception):
    """Base class of every error this library raises on purpose."""


class DefinitionError(FeatureStoreError):
    """A feature definition is invalid, or the repo's definitions contradict each other."""


class ConfigError(FeatureStoreError):
    """``featurestore.yaml`` is missing, unreadable or holds an invalid setting."""


class RegistryError(FeatureStoreError):
    """The registry is missing, corrupt, or does not hold what was asked for."""


class SchemaMismatchError(FeatureStoreError):
    """A source's actual columns do not match what its feature view declares."""


class RetrievalError(FeatureStoreError):
    """A request for features is malformed (missing key column, wrong key type, ...)."""


class UnknownFeatureError(RetrievalError):
    """A feature reference names a view or feature that has not been applied."""


class TooManyEntitiesError(RetrievalError):
    """A request holds more entity rows than the configured limit (``serving.max_entities``)."""


class MaterializedAheadError(RetrievalError):
    """An online read's ``now`` is before an aggregated view's covered end: its tiles hold
    later events. A caller's ``now`` in the past is the caller's to change; the prediction
    service reads at the current time, so there it means the view was materialized into the
    future (HTTP 503)."""


class OnlineStoreError(FeatureStoreError):
    """The online store failed while reading or writing."""


class OnlineStoreUnavailable(OnlineStoreError):
    """The configured online store does not answer (never silently replaced by another)."""


class OfflineStoreUnavailable(FeatureStoreError):
    """The configured offline engine cannot be reached (e.g. BigQuery without credentials)."""


class OutputError(FeatureStoreError):
    """An output file (a training set, batch scores) cannot be written where it was asked."""


class MaterializationError(FeatureStoreError):
    """A materialization run failed; the watermarks were left where they were."""


class ReportError(FeatureStoreError):
    """A skew, consistency or performance report cannot be built from what it was given: an
    empty log or window, rows served by other definitions, a training set without its
    manifest, labels that match no logged prediction."""


class TransformationError(FeatureStoreError):
    """A request-time transformation failed: the user's function raised, or returned columns
    or values that do not fit its declared schema. ``view`` names the on-demand feature view."""

    def __init__(self, message: str, view: str = "") -> None:
        super().__init__(message)
        self.view = view


class PushError(FeatureStoreError):
    """A push was refused before anything was written (missing columns, wrong types, a null
    key or event time, a mode the source does not support)."""


class UnknownPushSourceError(PushError):
    """No applied feature view reads the named push source."""


class ModelError(FeatureStoreError):
    """A model artifact is missing, tampered with, or bound to other feature definitions."""


class ModelNotServable(ModelError):
    """The model cannot be served right now: the registry no longer matches its binding, or a
    view it reads has no materialized data in this store. Serving answers 503 until fixed."""


class SkippedRowsWarning(UserWarning):
    """Source rows with a null join key or a null event time were skipped (and counted)."""
