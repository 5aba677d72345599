"""Content hashes of definitions: sha256 of canonical JSON (sorted keys) of what changes values.

In a view's fingerprint: its name, source (path as written, table or query, timestamp
columns), ttl, join keys with their dtypes, and fields with their dtypes (field order does
not matter); of an aggregated view also each aggregation (name, function, column and its
dtype, window, slide); a plain view's fingerprint is what it was before aggregations existed.
Not in it: descriptions, tags, owner, ``online``, and a push source's name (a view over a
push source is fingerprinted by the batch source its rows are stored in). A feature service
combines, per projection, the fingerprint of only the *projected* features, so adding an
unrelated field to a view does not invalidate a model trained on the service.

An on-demand (request-time) view's fingerprint covers its name, mode, the hash of its
normalized code (featurestore/transform_code.py: the function and the repo functions it
calls, comments and formatting ignored), its request fields with their dtypes, its output
fields with their dtypes (a projection's: only those projected), and the projection
fingerprint of each source view as it reads it (so a change to a source feature it reads
changes it; one to a feature it does not read does not).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from featurestore.definitions import (
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    FileSource,
    Source,
)
from featurestore.types import DType

if TYPE_CHECKING:
    from featurestore.on_demand import OnDemandFeatureView


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
    payload: dict[str, Any] = {
        "name": view.name,
        "source": _source_identity(view.batch_source),
        "ttl_us": view.ttl_microseconds,
        "join_keys": sorted([k, key_dtypes[k].name] for k in view.join_keys),
        "features": sorted([f.name, f.dtype.name] for f in view.features if f.name in selected),
    }
    if view.aggregations:
        dtypes = view.column_dtypes
        payload["aggregations"] = sorted(
            [a.output_name, a.function, a.column, dtypes[a.column].name, a.window_us, a.slide_us]
            for a in view.aggregations
            if a.output_name in selected
        )
    return _digest(payload)


def on_demand_fingerprint(
    view: OnDemandFeatureView,
    key_dtypes_by_view: Mapping[str, Mapping[str, DType]],
    features: Sequence[str] | None = None,
) -> str:
    """Fingerprint of an on-demand view, or of the projection of ``features`` when given."""
    selected = set(view.feature_names if features is None else features)
    return _digest(
        {
            "name": view.name,
            "kind": "on_demand",
            "mode": view.mode,
            "code_sha256": view.code_sha256,
            "request_fields": sorted([f.name, f.dtype.name] for f in view.request_fields),
            "features": sorted([f.name, f.dtype.name] for f in view.features if f.name in selected),
            "sources": sorted(
                [p.view.name, projection_fingerprint(p, key_dtypes_by_view)]
                for p in view.source_projections
            ),
        }
    )


def projection_fingerprint(
    projection: FeatureViewProjection, key_dtypes_by_view: Mapping[str, Mapping[str, DType]]
) -> str:
    """Fingerprint of a projection of a feature view or an on-demand view."""
    view = projection.view
    if isinstance(view, FeatureView):
        return view_fingerprint(view, key_dtypes_by_view[view.name], projection.features)
    return on_demand_fingerprint(view, key_dtypes_by_view, projection.features)


def service_fingerprint(
    service: FeatureService, key_dtypes_by_view: Mapping[str, Mapping[str, DType]]
) -> str:
    """Fingerprint of a service: its projections' fingerprints, view by view."""
    return _digest(
        sorted(
            [p.view.name, projection_fingerprint(p, key_dtypes_by_view)]
            for p in service.projections
        )
    )
