"""The registry: applied definitions, their fingerprints and each view's version history.

One JSON file, written atomically (temp file + rename) under a file lock, so concurrent
``apply`` runs never leave it torn. Watermarks are not here: they live in the online store
beside the data they describe.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    suggest,
)
from featurestore.diff import view_diff
from featurestore.errors import (
    RegistryError,
    RetrievalError,
    UnknownFeatureError,
)
from featurestore.fingerprint import (
    entity_fingerprint,
    on_demand_fingerprint,
    projection_fingerprint,
    service_fingerprint,
    view_fingerprint,
)
from featurestore.on_demand import OnDemandFeatureView, on_demand_diff, on_demand_to_dict
from featurestore.online.codec import view_layout_id
from featurestore.repo import RepoContents
from featurestore.sources import check_view_schema, complete_view, file_schema
from featurestore.types import DType

if TYPE_CHECKING:
    from filelock import BaseFileLock

    from featurestore.offline.bigquery.schema import SchemaReader

SCHEMA_VERSION = 1

log = logging.getLogger("featurestore.registry")


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


@dataclass
class ViewRecord:
    """An applied view: its definition, fingerprint, join keys' dtypes and version history."""

    view: FeatureView
    fingerprint: str
    key_dtypes: dict[str, DType]
    versions: list[VersionRecord] = field(default_factory=list)

    @property
    def version(self) -> int:
        """The current version (1 for the first applied definition; 0 before any)."""
        return self.versions[-1].version if self.versions else 0


@dataclass
class OnDemandRecord:
    """An applied on-demand view: its definition (code, no function), fingerprint, versions."""

    view: OnDemandFeatureView
    fingerprint: str
    versions: list[VersionRecord] = field(default_factory=list)

    @property
    def version(self) -> int:
        return self.versions[-1].version if self.versions else 0


@dataclass
class ServiceRecord:
    """An applied feature service: its definition, fingerprint and version history."""

    service: FeatureService
    fingerprint: str
    versions: list[VersionRecord] = field(default_factory=list)

    @property
    def version(self) -> int:
        """The current version (1 for the first applied definition; 0 before any)."""
        return self.versions[-1].version if self.versions else 0


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


# --- plan / apply ----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One definition that ``apply`` would add, change or remove."""

    kind: str  # "entity", "feature view" or "feature service"
    name: str
    action: str  # "added", "changed" or "removed"
    details: tuple[str, ...] = ()
    fingerprint_changed: bool = True
    layout_changed: bool = False  # a view's online row layout (field order, dtypes) changed


@dataclass
class Plan:
    """What ``apply`` would do, and the state it would write."""

    changes: list[Change]
    new_state: RegistryState
    replaces_unreadable: str | None = None
    """Set when the registry could not be read: why. ``apply`` then replaces it."""

    @property
    def is_empty(self) -> bool:
        """Nothing to write: no change, and the registry read was well-formed."""
        return not self.changes and self.replaces_unreadable is None

    def views_to_reset(self) -> list[str]:
        """Views whose online data and watermarks ``apply`` must drop: removed, or changed in
        fingerprint or in online row layout (a field reorder keeps the fingerprint, but
        stored rows are positional).

        When the registry being replaced was unreadable, nothing is known of what the online
        data was written with: every view applied is reset.
        """
        if self.replaces_unreadable is not None:
            return sorted(self.new_state.views)
        return [
            c.name
            for c in self.changes
            if c.kind == "feature view"
            and (
                c.action == "removed"
                or (c.action == "changed" and (c.fingerprint_changed or c.layout_changed))
            )
        ]


def resolve_view(
    view: FeatureView, repo_path: Path, bigquery_schema: SchemaReader | None = None
) -> tuple[FeatureView, dict[str, DType]]:
    """Check a view against its source's schema; return the view as applied and its join
    keys' dtypes. An aggregated view comes back with every aggregated column declared (its
    dtype read from the source when the repo does not declare it).

    A BigQuery source is checked through ``bigquery_schema`` (see offline/bigquery/schema.py);
    without it, or when BigQuery is unreachable, a warning says so and the declared
    dtypes are used.
    """
    if isinstance(view.batch_source, BigQuerySource):
        from featurestore.offline.bigquery.schema import check_bigquery_view

        dtypes = check_bigquery_view(view, bigquery_schema)
    else:
        dtypes = check_view_schema(view, file_schema(view.batch_source, repo_path))
    return complete_view(view, dtypes)


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

    for name, repo_view in contents.views.items():
        view, key_dtypes = resolve_view(repo_view, repo_path, bigquery_schema)
        record = ViewRecord(view, view_fingerprint(view, key_dtypes), key_dtypes)
        old_record = current.views.get(name)
        record.versions = list(old_record.versions) if old_record else []
        if old_record is None or old_record.fingerprint != record.fingerprint:
            record.versions.append(VersionRecord(record.version + 1, record.fingerprint, now))
        state.views[name] = record
        if old_record is None:
            changes.append(Change("feature view", name, "added"))
        else:
            details = view_diff(
                view_to_dict(old_record.view),
                view_to_dict(record.view),
                {k: d.name for k, d in old_record.key_dtypes.items()},
                {k: d.name for k, d in record.key_dtypes.items()},
            )
            if details:
                changed = old_record.fingerprint != record.fingerprint
                relaid = view_layout_id(old_record.view) != view_layout_id(view)
                changes.append(Change("feature view", name, "changed", details, changed, relaid))
    changes += [
        Change("feature view", n, "removed") for n in current.views if n not in contents.views
    ]

    changes += _plan_on_demand(current, contents, state, repo_path, now)
    key_dtypes_by_view = state.key_dtypes_by_view
    for name, repo_service in contents.services.items():
        # the service as applied: its projections read the applied views (an aggregated
        # view's columns declared), as a registry loaded later will have them
        service = dataclasses.replace(
            repo_service, features=[_applied(p, state) for p in repo_service.projections]
        )
        fp = service_fingerprint(service, key_dtypes_by_view)
        old_service = current.services.get(name)
        versions = list(old_service.versions) if old_service else []
        if old_service is None or old_service.fingerprint != fp:
            versions.append(VersionRecord(len(versions) + 1, fp, now))
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


def _plan_on_demand(
    current: RegistryState,
    contents: RepoContents,
    state: RegistryState,
    repo_path: Path,
    now: str,
) -> list[Change]:
    """Fingerprint the repo's on-demand views and check each on a sample of its sources
    (featurestore/transform_checks.py: outputs, dtypes, row-locality); record them in
    ``state``; the changes against ``current``."""
    from featurestore.transform_checks import check_on_demand

    kind = "on-demand feature view"
    changes = []
    for name, repo_view in contents.on_demand.items():
        # reading the applied views (an aggregated one with its columns declared)
        view = dataclasses.replace(
            repo_view,
            sources=[
                _applied(s, state) if isinstance(s, FeatureViewProjection) else s
                for s in repo_view.sources
            ],
        )
        check_on_demand(view, repo_path)
        fp = on_demand_fingerprint(view, state.key_dtypes_by_view)
        old = current.on_demand.get(name)
        versions = list(old.versions) if old else []
        if old is None or old.fingerprint != fp:
            versions.append(VersionRecord(len(versions) + 1, fp, now))
        state.on_demand[name] = OnDemandRecord(view, fp, versions)
        if old is None:
            changes.append(Change(kind, name, "added"))
            continue
        details = on_demand_diff(on_demand_to_dict(old.view), on_demand_to_dict(view))
        if old.fingerprint != fp and not details:
            details = ("a source feature it reads changed",)
        if details:
            changes.append(Change(kind, name, "changed", details, old.fingerprint != fp))
    changes += [
        Change(kind, n, "removed") for n in current.on_demand if n not in contents.on_demand
    ]
    return changes


def _applied(projection: FeatureViewProjection, state: RegistryState) -> FeatureViewProjection:
    """A projection of a repo view as a projection of the view as applied (``state``)."""
    name = projection.view.name
    if name in state.views:
        return state.views[name].view[list(projection.features)]
    if name in state.on_demand:
        return state.on_demand[name].view[list(projection.features)]
    return projection


class Registry:
    """The registry file: load it, and apply a repo's definitions to it atomically."""

    def __init__(
        self, path: Path, project: str, bigquery_schema: SchemaReader | None = None
    ) -> None:
        self.path = Path(path)
        self.project = project
        self.bigquery_schema = bigquery_schema  # reads BigQuery sources' schemas at apply
        # settled()'s last state, by the file's (inode, mtime, size): an apply replaces the file
        self._settled: tuple[tuple[int, int, int], RegistryState] | None = None

    def _lock(self) -> BaseFileLock:
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path) + ".lock", timeout=60)

    def load(self) -> RegistryState | None:
        """The applied state, or None when nothing was ever applied.

        RegistryError when the file cannot be read or is malformed (see registry_format.py);
        ``apply`` replaces a malformed file.
        """
        data = self._read()
        if data is None:
            return None
        try:
            return self._parse(data)
        except RegistryError as exc:
            raise RegistryError(
                f"{exc}; 'featurestore apply' replaces it with the repo's definitions "
                "(and drops the online data of every view it applies)"
            ) from None

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

        The new state is serialized and staged (written to a temporary file beside the
        registry) first; then ``before_write(plan)`` runs (apply uses it to drop the online
        data of changed views); then the staged file replaces the registry. So nothing is
        dropped unless the registry write is ready, and if ``before_write`` raises nothing is
        written. A malformed registry is replaced (``Plan.replaces_unreadable`` says why, and
        every applied view is reset). A plan with no change writes nothing; in a folder where
        the lock cannot be created (read-only) it still succeeds.
        """
        from filelock import Timeout

        try:
            lock = self._lock()
            lock.acquire()
        except Timeout:
            raise self._busy() from None
        except OSError as exc:
            return self._apply_without_lock(contents, repo_path, exc)
        try:
            result = self._plan_replacing_unreadable(contents, repo_path)
            if result.is_empty and self.path.exists():
                if before_write is not None:
                    before_write(result)
                return result
            staged = self._stage(result.new_state)
            try:
                if before_write is not None:
                    before_write(result)
                os.replace(staged, self.path)
            except BaseException:
                staged.unlink(missing_ok=True)
                raise
            return result
        finally:
            lock.release()

    @contextmanager
    def settled(self) -> Iterator[RegistryState | None]:
        """The applied state (None when nothing was applied), held still until the block
        ends: no ``apply`` runs meanwhile (the registry's lock).

        A materialization run or a push claims its views in the online store inside it
        (``online.base.claim_applied``), so it never claims a definition that an ``apply``
        has replaced since the run read the registry. Where the lock cannot be created (a
        read-only folder) no apply can change the registry either: the state is read
        without it.
        """
        from filelock import Timeout

        try:
            lock = self._lock()
            lock.acquire()
        except Timeout:
            raise self._busy() from None
        except OSError:
            yield self._load_unless_unchanged()
            return
        try:
            yield self._load_unless_unchanged()
        finally:
            lock.release()

    def _load_unless_unchanged(self) -> RegistryState | None:
        """``load()``, or the state it gave last time when the file is the same one (a push
        claims under ``settled()`` each time: a stat, not a parse)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._settled is None or self._settled[0] != stamp:
            state = self.load()
            if state is None:
                return None
            self._settled = (stamp, state)
        return self._settled[1]

    def _busy(self) -> RegistryError:
        return RegistryError(
            f"another 'featurestore apply' has held the lock {self.path}.lock for 60 s; "
            "wait for it to finish, or remove the lock file if no apply is running"
        )

    def _apply_without_lock(self, contents: RepoContents, repo_path: Path, why: OSError) -> Plan:
        """A no-change apply where the lock cannot be created (a read-only folder)."""
        result = plan(self.load(), contents, self.project, repo_path, self.bigquery_schema)
        if result.is_empty and self.path.exists():
            log.info("no change to apply; the registry folder is not writable (%s)", why)
            return result
        raise RegistryError(
            f"cannot write the registry {self.path}: {why.strerror or why} "
            f"({len(result.changes)} change(s) to apply); make {self.path.parent} writable"
        )

    def _plan_replacing_unreadable(self, contents: RepoContents, repo_path: Path) -> Plan:
        data = self._read()
        try:
            current = None if data is None else self._parse(data)
        except RegistryError as exc:
            log.info("replacing the unreadable registry: %s", exc)
            result = plan(None, contents, self.project, repo_path, self.bigquery_schema)
            result.replaces_unreadable = str(exc)
            return result
        return plan(current, contents, self.project, repo_path, self.bigquery_schema)

    def _read(self) -> bytes | None:
        """The registry file's bytes, or None when there is none; RegistryError if unreadable."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RegistryError(f"registry {self.path} cannot be read: {exc}") from None

    def _parse(self, data: bytes) -> RegistryState:
        """The state in the file's bytes; RegistryError (which apply repairs) if malformed."""
        try:
            parsed = json.loads(data.decode())
        except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd numbers
            raise RegistryError(f"registry {self.path} is not valid JSON: {exc}") from None
        try:
            return RegistryState.from_json(parsed)
        except RegistryError as exc:
            raise RegistryError(f"registry {self.path} is malformed: {exc}") from None

    def _stage(self, state: RegistryState) -> Path:
        """Write ``state`` to a synced temporary file beside the registry; return its path."""
        text = json.dumps(state.to_json(), indent=2, sort_keys=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        except OSError as exc:
            raise RegistryError(f"cannot write the registry {self.path}: {exc}") from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise RegistryError(f"cannot write the registry {self.path}: {exc}") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)
