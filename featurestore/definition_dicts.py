"""Definitions as the registry stores them (JSON-ready dicts), and back: one function each
way per kind (entity, source, push source, aggregation, feature view, feature service).
``registry_format.py`` checks a stored dict's shape before ``*_from_dict`` reads it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from featurestore.definitions import (
    Aggregation,
    BigQuerySource,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    Source,
)
from featurestore.errors import DefinitionError
from featurestore.types import ValueType, dtype_by_name

if TYPE_CHECKING:
    from featurestore.on_demand import OnDemandFeatureView


def source_to_dict(source: Source) -> dict[str, Any]:
    if isinstance(source, FileSource):
        return {
            "type": "file",
            "path": source.path,
            "timestamp_field": source.timestamp_field,
            "created_timestamp_column": source.created_timestamp_column,
            "name": source.name,
            "description": source.description,
            "tags": dict(source.tags),
            "owner": source.owner,
        }
    return {
        "type": "bigquery",
        "table": source.table,
        "query": source.query,
        "timestamp_field": source.timestamp_field,
        "created_timestamp_column": source.created_timestamp_column,
        "name": source.name,
        "description": source.description,
        "tags": dict(source.tags),
        "owner": source.owner,
    }


def source_from_dict(d: Mapping[str, Any]) -> Source:
    d = dict(d)
    kind = d.pop("type")
    return FileSource(**d) if kind == "file" else BigQuerySource(**d)


def entity_to_dict(e: Entity) -> dict[str, Any]:
    return {
        "name": e.name,
        "join_keys": list(e.join_keys),
        **({"value_type": e.value_type.name} if e.value_type is not None else {}),
        "description": e.description,
        "tags": dict(e.tags),
        "owner": e.owner,
    }


def entity_from_dict(d: Mapping[str, Any]) -> Entity:
    value_type = d.get("value_type")
    if value_type is None:
        return Entity(**d)
    if value_type not in ValueType.__members__:
        raise DefinitionError(f"entity {d.get('name')!r}: unknown value_type {value_type!r}")
    return Entity(**{**d, "value_type": ValueType[value_type]})


def view_to_dict(v: FeatureView) -> dict[str, Any]:
    return {
        "name": v.name,
        "entities": [e.name for e in v.entities],
        "schema": [
            {
                "name": f.name,
                "dtype": f.dtype.name,
                "description": f.description,
                "tags": dict(f.tags),
            }
            for f in v.schema
        ],
        "source": source_to_dict(v.batch_source),
        "push_source": None if v.push_source is None else push_source_to_dict(v.push_source),
        "ttl_microseconds": None if v.ttl is None else v.ttl // timedelta(microseconds=1),
        **(
            {"aggregations": [aggregation_to_dict(a) for a in v.aggregations]}
            if v.aggregations
            else {}
        ),
        "online": v.online,
        "description": v.description,
        "tags": dict(v.tags),
        "owner": v.owner,
    }


def push_source_to_dict(p: PushSource) -> dict[str, Any]:
    """A push source beside its view's (batch) source: its name and documentation."""
    return {"name": p.name, "description": p.description, "tags": dict(p.tags), "owner": p.owner}


def aggregation_to_dict(a: Aggregation) -> dict[str, Any]:
    """An aggregation as stored: every default resolved (slide and name)."""
    return {
        "column": a.column,
        "function": a.function,
        "time_window_us": a.window_us,
        "slide_interval_us": a.slide_us,
        "name": a.name,
    }


def aggregation_from_dict(d: Mapping[str, Any]) -> Aggregation:
    return Aggregation(
        column=d["column"],
        function=d["function"],
        time_window=timedelta(microseconds=d["time_window_us"]),
        slide_interval=timedelta(microseconds=d["slide_interval_us"]),
        name=d["name"],
    )


def view_from_dict(d: Mapping[str, Any], entities: Mapping[str, Entity]) -> FeatureView:
    batch = source_from_dict(d["source"])
    push = d.get("push_source")  # absent in registries written before push sources
    source = batch if push is None else PushSource(batch_source=batch, **push)
    return FeatureView(
        name=d["name"],
        entities=[entities[name] for name in d["entities"]],
        schema=[
            Field(
                name=f["name"],
                dtype=dtype_by_name(f["dtype"]),
                description=f.get("description", ""),
                tags=f.get("tags", {}),
            )
            for f in d["schema"]
        ],
        source=source,
        ttl=None
        if d["ttl_microseconds"] is None
        else timedelta(microseconds=d["ttl_microseconds"]),
        aggregations=[aggregation_from_dict(a) for a in d.get("aggregations", [])],
        online=d["online"],
        description=d["description"],
        tags=d["tags"],
        owner=d["owner"],
    )


def service_to_dict(s: FeatureService) -> dict[str, Any]:
    return {
        "name": s.name,
        "features": [{"view": p.view.name, "features": list(p.features)} for p in s.projections],
        "description": s.description,
        "tags": dict(s.tags),
        "owner": s.owner,
    }


def service_from_dict(
    d: Mapping[str, Any], views: Mapping[str, FeatureView | OnDemandFeatureView]
) -> FeatureService:
    """A service whose projections name ``views`` (feature views and on-demand views)."""
    return FeatureService(
        name=d["name"],
        features=[views[p["view"]][p["features"]] for p in d["features"]],
        description=d["description"],
        tags=d["tags"],
        owner=d["owner"],
    )
