"""registry.json, read strictly: a hand-edited or partial file is a RegistryError naming the part.

``Registry`` writes the file (registry.py), but a person, a merge or a copy may have changed
it. ``read_state`` checks everything a command relies on before any command uses it: the top
level and each section are mappings; each record holds its keys with JSON values of the
right kind; each definition is valid (rebuilt through the definitions' own constructors, so
their rules are not written twice); a view's entities and a service's views exist; a view's
key dtypes are valid key dtypes for exactly its join keys; an on-demand view's source views
exist and its stored code matches its hash; versions are a non-empty list of
``{version, fingerprint, applied_at}`` with increasing numbers. The section
``on_demand_feature_views`` may be absent (registries written before request-time views). The first problem found is
named, e.g. ``feature view 'stats': entity 'user' is not in the registry's entities``.
Keys the reader does not use are ignored.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from featurestore.definition_dicts import (
    entity_from_dict,
    service_from_dict,
    view_from_dict,
)
from featurestore.definitions import (
    Entity,
    FeatureView,
)
from featurestore.errors import DefinitionError, RegistryError
from featurestore.on_demand import OnDemandFeatureView, on_demand_from_dict
from featurestore.registry_state import (
    SCHEMA_VERSION,
    OnDemandRecord,
    RegistryState,
    ServiceRecord,
    VersionRecord,
    ViewRecord,
)
from featurestore.types import DType, dtype_by_name, is_key_dtype, key_dtype_names

_SECTIONS = ("entities", "feature_views", "feature_services")


def read_state(data: Any) -> RegistryState:
    """The applied state in ``data`` (registry.json parsed); RegistryError names what is wrong."""
    top = _mapping(data, "the registry")
    if top.get("schema_version") != SCHEMA_VERSION:
        raise RegistryError(f"schema version {top.get('schema_version')!r} is not {SCHEMA_VERSION}")
    project = top.get("project")
    if not isinstance(project, str):
        raise RegistryError(f"'project' must be a string, got {project!r}")
    applied_at = top.get("applied_at")
    if applied_at is not None and not isinstance(applied_at, str):
        raise RegistryError(f"'applied_at' must be a string, got {applied_at!r}")
    for section in _SECTIONS:
        if section not in top:
            raise RegistryError(f"the section {section!r} is missing")
        _mapping(top[section], f"the section {section!r}")

    entities: dict[str, Entity] = {}
    for name, raw in top["entities"].items():
        with _part(f"entity {name!r}"):
            entities[name] = _named(entity_from_dict(_definition(raw)), name)
    views: dict[str, ViewRecord] = {}
    for name, raw in top["feature_views"].items():
        with _part(f"feature view {name!r}"):
            views[name] = _view_record(name, _mapping(raw, "its record"), entities)
    plain_views = {n: r.view for n, r in views.items()}
    on_demand: dict[str, OnDemandRecord] = {}
    for name, raw in _mapping(top.get("on_demand_feature_views", {}), "the section").items():
        with _part(f"on-demand feature view {name!r}"):
            on_demand[name] = _on_demand_record(name, _mapping(raw, "its record"), plain_views)
    servable: dict[str, FeatureView | OnDemandFeatureView] = {
        **plain_views,
        **{n: r.view for n, r in on_demand.items()},
    }
    services: dict[str, ServiceRecord] = {}
    for name, raw in top["feature_services"].items():
        with _part(f"feature service {name!r}"):
            record = _mapping(raw, "its record")
            definition = _definition(record)
            for projection in _list(definition.get("features"), "'features'"):
                view = _mapping(projection, "a projection").get("view")
                if view not in servable:
                    raise RegistryError(f"feature view {view!r} is not in the registry")
            services[name] = ServiceRecord(
                service=_named(service_from_dict(definition, servable), name),
                fingerprint=_string(record.get("fingerprint"), "'fingerprint'"),
                versions=_versions(record.get("versions")),
            )
    return RegistryState(project, entities, views, services, applied_at, on_demand)


def _on_demand_record(
    name: str, record: Mapping[str, Any], views: Mapping[str, FeatureView]
) -> OnDemandRecord:
    definition = _definition(record)
    for source in _list(definition.get("sources"), "'sources'"):
        view = _mapping(source, "a source").get("view")
        if view not in views:
            raise RegistryError(f"source feature view {view!r} is not in the registry")
    return OnDemandRecord(
        view=_named(on_demand_from_dict(definition, views), name),
        fingerprint=_string(record.get("fingerprint"), "'fingerprint'"),
        versions=_versions(record.get("versions")),
    )


def _view_record(name: str, record: Mapping[str, Any], entities: dict[str, Entity]) -> ViewRecord:
    definition = _definition(record)
    for entity in _list(definition.get("entities"), "'entities'"):
        if not isinstance(entity, str) or entity not in entities:
            raise RegistryError(f"entity {entity!r} is not in the registry's entities")
    view = _named(view_from_dict(definition, entities), name)
    return ViewRecord(
        view=view,
        fingerprint=_string(record.get("fingerprint"), "'fingerprint'"),
        key_dtypes=_key_dtypes(record.get("key_dtypes"), view),
        versions=_versions(record.get("versions")),
    )


def _key_dtypes(raw: Any, view: FeatureView) -> dict[str, DType]:
    key_dtypes = {
        key: dtype_by_name(_string(dtype, f"the dtype of join key {key!r}"))
        for key, dtype in _mapping(raw, "'key_dtypes'").items()
    }
    if set(key_dtypes) != set(view.join_keys):
        raise RegistryError(
            f"'key_dtypes' names {sorted(key_dtypes)} but the join keys are {list(view.join_keys)}"
        )
    for key, dtype in key_dtypes.items():
        if not is_key_dtype(dtype):
            raise RegistryError(
                f"join key {key!r} has dtype {dtype}; a join key must be one of {key_dtype_names()}"
            )
    return {key: key_dtypes[key] for key in view.join_keys}


def _versions(raw: Any) -> list[VersionRecord]:
    versions: list[VersionRecord] = []
    for entry in _list(raw, "'versions'"):
        item = _mapping(entry, "a version record")
        number = item.get("version")
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise RegistryError(f"version number {number!r} is not a positive integer")
        if versions and number <= versions[-1].version:
            raise RegistryError(f"versions are not increasing ({versions[-1].version}, {number})")
        versions.append(
            VersionRecord(
                number,
                _string(item.get("fingerprint"), "a version's 'fingerprint'"),
                _string(item.get("applied_at"), "a version's 'applied_at'"),
            )
        )
    if not versions:
        raise RegistryError("'versions' is empty")
    return versions


def _definition(record: Any) -> dict[str, Any]:
    return _mapping(_mapping(record, "its record").get("definition"), "'definition'")


def _named(definition: Any, name: str) -> Any:
    if definition.name != name:
        raise RegistryError(
            f"is recorded under {name!r} but its definition is named {definition.name!r}"
        )
    return definition


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RegistryError(f"{what} must be a JSON object, got {_kind(value)}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise RegistryError(f"{what} must be a JSON list, got {_kind(value)}")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RegistryError(f"{what} must be a string, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(
        type(value), f"a number ({value!r})" if isinstance(value, (int, float)) else repr(value)
    )


@contextmanager
def _part(what: str) -> Iterator[None]:
    """Name the record at fault in any problem found while rebuilding it.

    The definitions' constructors and ``*_from_dict`` expect the shape the registry writes;
    on an edited file they fail with KeyError (a missing key) or TypeError / ValueError /
    AttributeError / OverflowError (a value of another kind or size): each is a malformed
    record, reported as such.
    """
    try:
        yield
    except (RegistryError, DefinitionError) as exc:
        message = str(exc)  # a definition's own error often names it already
        raise RegistryError(message if message.startswith(what) else f"{what}: {message}") from None
    except KeyError as exc:
        raise RegistryError(f"{what}: the key {exc} is missing") from None
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        # the message may quote an edited key or value: control characters escaped, one line
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(exc))
        raise RegistryError(f"{what}: malformed record ({type(exc).__name__}: {text})") from None
