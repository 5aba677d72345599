"""Content hashes of definitions: sha256 of canonical JSON (sorted keys) of what changes values.

In a view's fingerprint: its name, source (path as written, table or query, timestamp
columns), ttl, join keys with their dtypes, and fields with their dtypes (field order does
not matter). Not in it: descriptions, tags, owner, ``online``. A feature service combines,
per projection, the fingerprint of only the *projected* features, so adding an unrelated
field to a view does not invalidate a model trained on the service.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from featurestore.definitions import Entity, FeatureService, FeatureView, FileSource, Source
from featurestore.types import DType


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _source_identity(source: Source) -> dict[str, Any]:
    if isinstance(source, FileSource):
        where: dict[str, Any] = {"type": "file", "path": source.path}
    else:
        where = {"type": "bigquery", "table": source.table, "query": source.query}
    return {
        **where,
        "timestamp_field": source.timestamp_field,
        "created_timestamp_column": source.created_timestamp_column,
    }


def entity_fingerprint(entity: Entity) -> str:
    return _digest({"name": entity.name, "join_keys": list(entity.join_keys)})


def view_fingerprint(
    view: FeatureView, key_dtypes: Mapping[str, DType], features: Sequence[str] | None = None
) -> str:
    """Fingerprint of a view, or of the projection of ``features`` when given."""
    selected = set(view.feature_names if features is None else features)
    return _digest(
        {
            "name": view.name,
            "source": _source_identity(view.source),
            "ttl_us": view.ttl_microseconds,
            "join_keys": sorted([k, key_dtypes[k].name] for k in view.join_keys),
            "features": sorted([f.name, f.dtype.name] for f in view.features if f.name in selected),
        }
    )


def service_fingerprint(
    service: FeatureService, key_dtypes_by_view: Mapping[str, Mapping[str, DType]]
) -> str:
    """Fingerprint of a service: its projections' fingerprints, view by view."""
    return _digest(
        sorted(
            [p.view.name, view_fingerprint(p.view, key_dtypes_by_view[p.view.name], p.features)]
            for p in service.projections
        )
    )
