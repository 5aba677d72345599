"""The registry: applied definitions, their fingerprints and each view's version history.

One JSON file, written atomically (temp file + rename) under a file lock, so concurrent
``apply`` runs never leave it torn. Watermarks are not here: they live in the online store
beside the data they describe.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.definitions import (
    BigQuerySource,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    entity_from_dict,
    entity_to_dict,
    format_ttl,
    service_from_dict,
    service_to_dict,
    suggest,
    view_from_dict,
    view_to_dict,
)
from featurestore.errors import (
    RegistryError,
    RetrievalError,
    UnknownFeatureError,
)
from featurestore.fingerprint import entity_fingerprint, service_fingerprint, view_fingerprint
from featurestore.repo import RepoContents
from featurestore.sources import check_view_schema, file_schema
from featurestore.types import DType, dtype_by_name

if TYPE_CHECKING:
    from featurestore.offline.bigquery_schema import SchemaReader

SCHEMA_VERSION = 1


@dataclass
class ViewRecord:
    view: FeatureView
    fingerprint: str
    key_dtypes: dict[str, DType]
    versions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def version(self) -> int:
        return self.versions[-1]["version"] if self.versions else 0


@dataclass
class ServiceRecord:
    service: FeatureService
    fingerprint: str
    versions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RegistryState:
    """What has been applied: definitions by name, with fingerprints and versions."""

    project: str
    entities: dict[str, Entity] = field(default_factory=dict)
    views: dict[str, ViewRecord] = field(default_factory=dict)
    services: dict[str, ServiceRecord] = field(default_factory=dict)
    applied_at: str | None = None

    # --- lookups -----------------------------------------------------------------------

    def view(self, name: str) -> FeatureView:
        return self.view_record(name).view

    def view_record(self, name: str) -> ViewRecord:
        try:
            return self.views[name]
        except KeyError:
            raise UnknownFeatureError(
                f"no feature view {name!r} has been applied{suggest(name, list(self.views))}"
            ) from None

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

    def projection_fingerprint(self, projection: FeatureViewProjection) -> str:
        record = self.view_record(projection.view.name)
        return view_fingerprint(record.view, record.key_dtypes, projection.features)

    def resolve(
        self, features: Sequence[str] | FeatureService | str
    ) -> tuple[list[FeatureViewProjection], FeatureService | None]:
        """Turn feature references, a service or a service name into applied projections.

        References are ``"view:feature"``; they are grouped by view in order of first
        appearance, features in the order asked. A service is looked up by name in the
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
            view = self.view(view_name)
            if feature not in view.feature_names:
                all_refs = [f"{v}:{f}" for v, r in self.views.items() for f in r.view.feature_names]
                raise UnknownFeatureError(
                    f"feature view {view_name!r} has no feature {feature!r}{suggest(ref, all_refs)}"
                )
            chosen = grouped.setdefault(view_name, [])
            if feature in chosen:
                raise RetrievalError(f"feature {ref!r} is requested twice")
            chosen.append(feature)
        return [self.view(v)[fs] for v, fs in grouped.items()], None

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
                    "versions": r.versions,
                }
                for n, r in sorted(self.views.items())
            },
            "feature_services": {
                n: {
                    "definition": service_to_dict(r.service),
                    "fingerprint": r.fingerprint,
                    "versions": r.versions,
                }
                for n, r in sorted(self.services.items())
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegistryState:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise RegistryError(
                f"registry schema version {data.get('schema_version')!r} is not "
                f"{SCHEMA_VERSION}; re-run 'featurestore apply'"
            )
        entities = {n: entity_from_dict(d["definition"]) for n, d in data["entities"].items()}
        views = {
            n: ViewRecord(
                view=view_from_dict(d["definition"], entities),
                fingerprint=d["fingerprint"],
                key_dtypes={k: dtype_by_name(t) for k, t in d["key_dtypes"].items()},
                versions=d["versions"],
            )
            for n, d in data["feature_views"].items()
        }
        plain_views = {n: r.view for n, r in views.items()}
        services = {
            n: ServiceRecord(
                service=service_from_dict(d["definition"], plain_views),
                fingerprint=d["fingerprint"],
                versions=d["versions"],
            )
            for n, d in data["feature_services"].items()
        }
        return cls(data["project"], entities, views, services, data.get("applied_at"))


# --- plan / apply ----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One definition that ``apply`` would add, change or remove."""

    kind: str  # "entity", "feature view" or "feature service"
    name: str
    action: str  # "added", "changed" or "removed"
    details: tuple[str, ...] = ()
    fingerprint_changed: bool = True


@dataclass
class Plan:
    """What ``apply`` would do, and the state it would write."""

    changes: list[Change]
    new_state: RegistryState

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def views_to_reset(self) -> list[str]:
        """Views whose online data and watermarks ``apply`` must drop (changed or removed)."""
        return [
            c.name
            for c in self.changes
            if c.kind == "feature view"
            and (c.action == "removed" or (c.action == "changed" and c.fingerprint_changed))
        ]


def resolve_key_dtypes(
    view: FeatureView, repo_path: Path, bigquery_schema: SchemaReader | None = None
) -> dict[str, DType]:
    """Check a view against its source's schema and return its join keys' dtypes.

    A BigQuery source is checked through ``bigquery_schema`` (see offline/bigquery_schema.py);
    without it, or when BigQuery is unreachable, a warning says so and the declared
    dtypes are used.
    """
    if isinstance(view.source, BigQuerySource):
        from featurestore.offline.bigquery_schema import check_bigquery_view

        return check_bigquery_view(view, bigquery_schema)
    return check_view_schema(view, file_schema(view.source, repo_path))


def _diff_view(old: ViewRecord, new: ViewRecord) -> tuple[str, ...]:
    a, b = view_to_dict(old.view), view_to_dict(new.view)
    details = []
    for key in ("entities", "source", "ttl_microseconds", "online", "description", "tags", "owner"):
        if a[key] != b[key]:
            if key == "source":
                changed = [k for k in b[key] if a[key].get(k) != b[key].get(k)]
                details.append(
                    "source: "
                    + ", ".join(f"{k} {a[key].get(k)!r} -> {b[key].get(k)!r}" for k in changed)
                )
            elif key == "ttl_microseconds":
                details.append(f"ttl: {format_ttl(old.view.ttl)} -> {format_ttl(new.view.ttl)}")
            else:
                details.append(f"{key}: {a[key]!r} -> {b[key]!r}")
    old_fields = {f.name: f.dtype.name for f in old.view.schema}
    new_fields = {f.name: f.dtype.name for f in new.view.schema}
    for name in new_fields.keys() - old_fields.keys():
        details.append(f"schema: added field {name} ({new_fields[name]})")
    for name in old_fields.keys() - new_fields.keys():
        details.append(f"schema: removed field {name}")
    for name in sorted(old_fields.keys() & new_fields.keys()):
        if old_fields[name] != new_fields[name]:
            details.append(f"schema: {name} dtype {old_fields[name]} -> {new_fields[name]}")
    if [n for n in old_fields if n in new_fields] != [n for n in new_fields if n in old_fields]:
        details.append("schema: field order " + ", ".join(new_fields))
    old_descr = {f.name: (f.description, f.tags) for f in old.view.schema}
    for f in new.view.schema:
        if f.name in old_descr and old_descr[f.name] != (f.description, f.tags):
            details.append(f"schema: description or tags of {f.name}")
    if old.key_dtypes != new.key_dtypes:
        details.append(
            "join key dtypes: "
            f"{ {k: d.name for k, d in old.key_dtypes.items()} } -> "
            f"{ {k: d.name for k, d in new.key_dtypes.items()} }"
        )
    return tuple(sorted(details))


_COSMETIC = ("description", "tags", "owner")


def _changed_attributes(
    old: dict[str, Any], new: dict[str, Any], keys: Sequence[str]
) -> tuple[str, ...]:
    return tuple(f"{k}: {old[k]!r} -> {new[k]!r}" for k in keys if old[k] != new[k])


def plan(
    current: RegistryState | None,
    contents: RepoContents,
    project: str,
    repo_path: Path,
    bigquery_schema: SchemaReader | None = None,
) -> Plan:
    """Compare a repo's definitions with what was applied; nothing is written."""
    now = datetime.now(UTC).isoformat()
    current = current or RegistryState(project)
    state = RegistryState(project, applied_at=now)
    changes: list[Change] = []

    state.entities = dict(contents.entities)
    for name, entity in contents.entities.items():
        old = current.entities.get(name)
        if old is None:
            changes.append(Change("entity", name, "added"))
        elif entity_to_dict(old) != entity_to_dict(entity):
            fp_changed = entity_fingerprint(old) != entity_fingerprint(entity)
            details = _changed_attributes(
                entity_to_dict(old), entity_to_dict(entity), ("join_keys", *_COSMETIC)
            )
            changes.append(Change("entity", name, "changed", details, fp_changed))
    changes += [
        Change("entity", n, "removed") for n in current.entities if n not in contents.entities
    ]

    for name, view in contents.views.items():
        key_dtypes = resolve_key_dtypes(view, repo_path, bigquery_schema)
        record = ViewRecord(view, view_fingerprint(view, key_dtypes), key_dtypes)
        old_record = current.views.get(name)
        record.versions = list(old_record.versions) if old_record else []
        if old_record is None or old_record.fingerprint != record.fingerprint:
            record.versions.append(
                {
                    "version": record.version + 1,
                    "fingerprint": record.fingerprint,
                    "applied_at": now,
                }
            )
        state.views[name] = record
        if old_record is None:
            changes.append(Change("feature view", name, "added"))
        else:
            details = _diff_view(old_record, record)
            if details:
                changed = old_record.fingerprint != record.fingerprint
                changes.append(Change("feature view", name, "changed", details, changed))
    changes += [
        Change("feature view", n, "removed") for n in current.views if n not in contents.views
    ]

    key_dtypes_by_view = {n: r.key_dtypes for n, r in state.views.items()}
    for name, service in contents.services.items():
        fp = service_fingerprint(service, key_dtypes_by_view)
        old_service = current.services.get(name)
        versions = list(old_service.versions) if old_service else []
        if old_service is None or old_service.fingerprint != fp:
            versions.append({"version": len(versions) + 1, "fingerprint": fp, "applied_at": now})
        state.services[name] = ServiceRecord(service, fp, versions)
        if old_service is None:
            changes.append(Change("feature service", name, "added"))
        elif (
            service_to_dict(old_service.service) != service_to_dict(service)
            or old_service.fingerprint != fp
        ):
            old_refs, new_refs = old_service.service.refs, service.refs
            reordered = old_refs != new_refs and sorted(old_refs) == sorted(new_refs)
            details = tuple(
                [f"added {r}" for r in new_refs if r not in old_refs]
                + [f"removed {r}" for r in old_refs if r not in new_refs]
                + ([f"feature order: {', '.join(new_refs)}"] if reordered else [])
                + list(
                    _changed_attributes(
                        service_to_dict(old_service.service), service_to_dict(service), _COSMETIC
                    )
                )
                + (["a projected view changed"] if old_service.fingerprint != fp else [])
            )
            changes.append(
                Change("feature service", name, "changed", details, old_service.fingerprint != fp)
            )
    changes += [
        Change("feature service", n, "removed")
        for n in current.services
        if n not in contents.services
    ]
    if not changes:
        state.applied_at = current.applied_at
    return Plan(changes, state)


class Registry:
    """The registry file: load it, and apply a repo's definitions to it atomically."""

    def __init__(
        self, path: Path, project: str, bigquery_schema: SchemaReader | None = None
    ) -> None:
        self.path = Path(path)
        self.project = project
        self.bigquery_schema = bigquery_schema  # reads BigQuery sources' schemas at apply

    def _lock(self):  # type: ignore[no-untyped-def]
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path) + ".lock", timeout=60)

    def load(self) -> RegistryState | None:
        """The applied state, or None when nothing was ever applied."""
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"registry {self.path} is unreadable: {exc}") from None
        return RegistryState.from_json(data)

    def require(self) -> RegistryState:
        """The applied state; RegistryError when nothing was applied yet."""
        state = self.load()
        if state is None:
            raise RegistryError(
                f"nothing has been applied yet (no registry at {self.path}); "
                "run 'featurestore apply' first"
            )
        return state

    def plan(self, contents: RepoContents, repo_path: Path) -> Plan:
        return plan(self.load(), contents, self.project, repo_path, self.bigquery_schema)

    def apply(
        self,
        contents: RepoContents,
        repo_path: Path,
        before_write: Callable[[Plan], None] | None = None,
    ) -> Plan:
        """Compute the plan and write the new state, under the lock, atomically.

        ``before_write(plan)`` runs under the lock before the registry is written (apply uses
        it to drop the online data of changed views); if it raises, nothing is written.
        """
        with self._lock():
            result = plan(self.load(), contents, self.project, repo_path, self.bigquery_schema)
            if before_write is not None:
                before_write(result)
            if not result.is_empty or not self.path.exists():
                self._write(result.new_state)
            return result

    def _write(self, state: RegistryState) -> None:
        text = json.dumps(state.to_json(), indent=2, sort_keys=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
