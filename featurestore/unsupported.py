"""Feast definitions featurestore deliberately does not support: each fails at construction.

A Feast repo converted by changing its imports from ``feast`` to ``featurestore`` runs here,
except for these, which raise a ``DefinitionError`` naming the feature and what to do
instead, never silently ignored:

================================  ==========================================================
Feast                             here
================================  ==========================================================
``Project(...)``                  the project is ``project:`` in featurestore.yaml
``LabelView(...)``                labels are entity_df columns (``featurestore train --label``);
                                  ``ConflictPolicy`` exists only so a Feast file imports
``LoggingConfig(...)``,           the prediction service logs what it serves to
``FileLoggingDestination(...)``   ``feature_log.path`` (featurestore.yaml)
``Map``, ``Json``, ``Array(...)``, a feature holds a scalar: Int32, Int64, Float32, Float64,
``Struct(...)`` field types       String, Bool, UnixTimestamp (featurestore/types.py)
``FeatureView(enable_validation=,  refused by the definitions (featurestore/definitions.py)
version=)``, ``FeatureService(
logging_config=)``, a source's
``field_mapping=``
================================  ==========================================================
"""

from __future__ import annotations

import enum
from typing import Any

from featurestore.errors import DefinitionError

_WHY = {
    "Project": "a featurestore repo's project is 'project:' in featurestore.yaml; remove the "
    "Project definition",
    "LabelView": "labels are entity_df columns here (featurestore train --label); remove the "
    "label view",
    "LoggingConfig": "the prediction service logs what it serves to feature_log.path in "
    "featurestore.yaml; remove logging_config=",
    "FileLoggingDestination": "the prediction service logs what it serves to feature_log.path "
    "in featurestore.yaml; remove the logging destination",
}


class _Unsupported:
    """Refuses construction, naming the Feast feature (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = type(self).__name__
        raise DefinitionError(f"{name} is not supported by featurestore: {_WHY[name]}")


class Project(_Unsupported):
    """Feast's project object: not supported (module docstring)."""


class LabelView(_Unsupported):
    """Feast's label view: not supported (module docstring)."""


class LoggingConfig(_Unsupported):
    """Feast's feature-service logging: not supported (module docstring)."""


class FileLoggingDestination(_Unsupported):
    """Feast's logging destination: not supported (module docstring)."""


class ConflictPolicy(enum.Enum):
    """Feast's label conflict policies: importable so a converted Feast file imports; the
    ``LabelView`` that uses them is refused."""

    LAST_WRITE_WINS = "last_write_wins"
    LABELER_PRIORITY = "labeler_priority"
    MAJORITY_VOTE = "majority_vote"
