"""What has been applied, in memory: definitions by name with their fingerprints and version
histories (``RegistryState`` and its records), and their registry.json form (``to_json``;
``registry_format.read_state`` reads it back, checking every part)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featurestore.columns import same_name
from featurestore.definition_dicts import (
    entity_to_dict,
    service_to_dict,
    view_to_dict,
)
from featurestore.definitions import (
    BigQuerySource,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    FileSource,
    PushSource,
    suggest,
)
from featurestore.errors import (
    RetrievalError,
    UnknownFeatureError,
)
from featurestore.fingerprint import (
    entity_fingerprint,
    projection_fingerprint,
)
from featurestore.on_demand import OnDemandFeatureView, RequestSource, on_demand_to_dict
from featurestore.types import DType, shared_key_dtype

if TYPE_CHECKING:
    pass

SCHEMA_VERSION = 1
DataSource = FileSource | BigQuerySource | PushSource | RequestSource


@dataclass(frozen=True)
class VersionRecord:
    """One version of a view or service: a new one is recorded when its fingerprint changes.

    Stored in registry.json as ``{"version": 2, "fingerprint": "...", "applied_at": "..."}``.
    """

    version: int
    fingerprint: str
    applied_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "fingerprint": self.fingerprint,
            "applied_at": self.applied_at,
        }


class _Versioned:
    """A record's current version: 1 for the first applied definition, 0 before any."""

    versions: list[VersionRecord]

    @property
    def version(self) -> int:
        return self.versions[-1].version if self.versions else 0


@dataclass
class ViewRecord(_Versioned):
    """An applied view: its definition, fingerprint, join keys' dtypes and version history."""

    view: FeatureView
    fingerprint: str
    key_dtypes: dict[str, DType]
    versions: list[VersionRecord] = field(default_factory=list)


@dataclass
class OnDemandRecord(_Versioned):
    """An applied on-demand view: its definition (code, no function), fingerprint, versions."""

    view: OnDemandFeatureView
    fingerprint: str
    versions: list[VersionRecord] = field(default_factory=list)


@dataclass
class ServiceRecord(_Versioned):
    """An applied feature service: its definition, fingerprint and version history."""

    service: FeatureService
    fingerprint: str
    versions: list[VersionRecord] = field(default_factory=list)


@dataclass
class RegistryState:
    """What has been applied: definitions by name, with fingerprints and versions."""

    project: str
    entities: dict[str, Entity] = field(default_factory=dict)
    views: dict[str, ViewRecord] = field(default_factory=dict)
    services: dict[str, ServiceRecord] = field(default_factory=dict)
    applied_at: str | None = None
    on_demand: dict[str, OnDemandRecord] = field(default_factory=dict)

    # --- lookups -----------------------------------------------------------------------

    def view(self, name: str) -> FeatureView:
        return self.view_record(name).view

    def view_record(self, name: str) -> ViewRecord:
        try:
            return self.views[name]
        except KeyError:
            hint = (
                f"; {name!r} is an on-demand feature view (computed at request time)"
                if name in self.on_demand
                else suggest(name, list(self.views))
            )
            raise UnknownFeatureError(f"no feature view {name!r} has been applied{hint}") from None

    def any_view(self, name: str) -> FeatureView | OnDemandFeatureView:
        """The applied feature view or on-demand view called ``name``."""
        if name in self.on_demand:
            return self.on_demand[name].view
        if name in self.views:
            return self.views[name].view
        raise UnknownFeatureError(
            f"no feature view {name!r} has been applied"
            f"{suggest(name, [*self.views, *self.on_demand])}"
        )

    def on_demand_view(self, name: str) -> OnDemandFeatureView:
        try:
            return self.on_demand[name].view
        except KeyError:
            hint = (
                f"; {name!r} is a feature view"
                if name in self.views
                else suggest(name, list(self.on_demand))
            )
            raise UnknownFeatureError(
                f"no on-demand feature view {name!r} has been applied{hint}"
            ) from None

    def entity(self, name: str) -> Entity:
        try:
            return self.entities[name]
        except KeyError:
            raise UnknownFeatureError(
                f"no entity {name!r} has been applied{suggest(name, list(self.entities))}"
            ) from None

    def data_sources(self) -> list[DataSource]:
        """The sources the applied views read (a push source's batch source too, an
        on-demand view's request sources), each once, by name (unnamed ones by path)."""
        found: dict[tuple[str, str], DataSource] = {}
        for record in self.views.values():
            source = record.view.source
            sources: list[DataSource] = [source]
            if isinstance(source, PushSource):
                sources.append(source.batch_source)
            for one in sources:
                found.setdefault((type(one).__name__, _source_name(one)), one)
        for odfv in self.on_demand.values():
            for request in odfv.view.request_sources:
                found.setdefault(("RequestSource", request.name), request)
        return [found[k] for k in sorted(found, key=lambda k: (k[1], k[0]))]

    def data_source(self, name: str) -> DataSource:
        """The applied views' data source called ``name`` (its name, or a file's path)."""
        sources = self.data_sources()
        for source in sources:
            if _source_name(source) == name:
                return source
        names = [_source_name(s) for s in sources]
        raise UnknownFeatureError(
            f"no data source {name!r} is read by an applied view{suggest(name, names)}"
        )

    @property
    def key_dtypes_by_view(self) -> dict[str, dict[str, DType]]:
        return {n: r.key_dtypes for n, r in self.views.items()}

    def service(self, name: str) -> FeatureService:
        return self.service_record(name).service

    def service_record(self, name: str) -> ServiceRecord:
        try:
            return self.services[name]
        except KeyError:
            raise UnknownFeatureError(
                f"no feature service {name!r} has been applied{suggest(name, list(self.services))}"
            ) from None

    def key_dtypes(self, view_name: str) -> dict[str, DType]:
        return self.view_record(view_name).key_dtypes

    def shared_key_dtypes(self, view_names: Iterable[str]) -> dict[str, DType]:
        """Every join key of these feature views, in order of first use, with the dtype one
        entity column of it holds (``types.shared_key_dtype``). Views that declare a key as
        a String and as an integer cannot be read together (an entity row holds one value
        per key), nor keys whose names differ only in case: a RetrievalError names the keys
        and both views."""
        found: dict[str, tuple[DType, str]] = {}
        for name in view_names:
            dtypes = self.key_dtypes(name)
            for key in self.view(name).join_keys:
                dtype = dtypes[key]
                for other, (_, other_view) in found.items():
                    if other != key and same_name(other, key):
                        raise RetrievalError(
                            f"join keys {other!r} (feature view {other_view!r}) and {key!r} "
                            f"(feature view {name!r}) differ only in case: the offline "
                            "engines name columns case-insensitively and would join one for "
                            "the other; rename one of the keys"
                        )
                first, owner = found.setdefault(key, (dtype, name))
                shared = shared_key_dtype(first, dtype)
                if shared is None:
                    raise RetrievalError(
                        f"join key {key!r} is {first} in feature view {owner!r} but {dtype} in "
                        f"feature view {name!r}: one entity column cannot hold both; declare "
                        "the key with one dtype in both views, or read them separately"
                    )
                found[key] = (shared, owner)
        return {key: dtype for key, (dtype, _) in found.items()}

    def projection_view_names(self, projections: Sequence[FeatureViewProjection]) -> list[str]:
        """The feature views the projections read: themselves, or an on-demand view's sources."""
        names: list[str] = []
        for p in projections:
            if p.view.name in self.on_demand:
                sources = self.on_demand[p.view.name].view.source_projections
                names += [s.view.name for s in sources]
            else:
                names.append(p.view.name)
        return names

    def projection_fingerprint(self, projection: FeatureViewProjection) -> str:
        """The applied fingerprint of ``projection``'s features (either kind of view)."""
        applied = self.any_view(projection.view.name)
        return projection_fingerprint(
            FeatureViewProjection(view=applied, features=projection.features),
            self.key_dtypes_by_view,
        )

    def resolve(
        self, features: Sequence[str] | FeatureService | str
    ) -> tuple[list[FeatureViewProjection], FeatureService | None]:
        """Turn feature references, a service or a service name into applied projections.

        References are ``"view:feature"`` (a feature view or an on-demand view); they are
        grouped by view in order of first appearance, features in the order asked. A service is looked up by name in the
        registry (an object is checked against what was applied). Unknown names raise
        ``UnknownFeatureError`` with close matches.
        """
        if isinstance(features, str):
            features = self.service(features)
        if isinstance(features, FeatureService):
            service = self.service(features.name)
            if features.refs != service.refs:
                raise RetrievalError(
                    f"feature service {features.name!r} serves {features.refs} here but "
                    f"{service.refs} in the registry; run 'featurestore apply' first"
                )
            return list(service.projections), service
        if not features:
            raise RetrievalError("no features requested: pass feature references or a service")
        grouped: dict[str, list[str]] = {}
        for ref in features:
            if not isinstance(ref, str) or ref.count(":") != 1:
                raise UnknownFeatureError(
                    f"feature reference {ref!r} is not of the form 'view:feature'"
                )
            view_name, feature = ref.split(":")
            view = self.any_view(view_name)
            if feature not in view.feature_names:
                all_refs = [
                    f"{v}:{f}"
                    for v in [*self.views, *self.on_demand]
                    for f in self.any_view(v).feature_names
                ]
                raise UnknownFeatureError(
                    f"feature view {view_name!r} has no feature {feature!r}{suggest(ref, all_refs)}"
                )
            chosen = grouped.setdefault(view_name, [])
            if feature in chosen:
                raise RetrievalError(f"feature {ref!r} is requested twice")
            chosen.append(feature)
        return [self.any_view(v)[fs] for v, fs in grouped.items()], None

    # --- (de)serialization -------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "project": self.project,
            "applied_at": self.applied_at,
            "entities": {
                n: {"definition": entity_to_dict(e), "fingerprint": entity_fingerprint(e)}
                for n, e in sorted(self.entities.items())
            },
            "feature_views": {
                n: {
                    "definition": view_to_dict(r.view),
                    "fingerprint": r.fingerprint,
                    "key_dtypes": {k: d.name for k, d in r.key_dtypes.items()},
                    "versions": [v.to_json() for v in r.versions],
                }
                for n, r in sorted(self.views.items())
            },
            "on_demand_feature_views": {
                n: {
                    "definition": on_demand_to_dict(r.view),
                    "fingerprint": r.fingerprint,
                    "versions": [v.to_json() for v in r.versions],
                }
                for n, r in sorted(self.on_demand.items())
            },
            "feature_services": {
                n: {
                    "definition": service_to_dict(r.service),
                    "fingerprint": r.fingerprint,
                    "versions": [v.to_json() for v in r.versions],
                }
                for n, r in sorted(self.services.items())
            },
        }

    @classmethod
    def from_json(cls, data: Any) -> RegistryState:
        """The state in parsed registry.json; RegistryError names the first malformed part."""
        from featurestore.registry_format import read_state  # it builds this module's records

        return read_state(data)


def _source_name(source: DataSource) -> str:
    """A data source's name; an unnamed file source's path, an unnamed BigQuery source's
    table or query."""
    if source.name:
        return source.name
    if isinstance(source, FileSource):
        return source.path
    assert isinstance(source, BigQuerySource)
    return source.table or source.query or ""
