"""``plan``: what ``apply`` would add, change or remove, and the state it would write; each
change says whether a view's online data must be reset (fingerprint or row layout changed)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
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
    FeatureView,
    FeatureViewProjection,
)
from featurestore.diff import view_diff
from featurestore.errors import DefinitionError, RetrievalError
from featurestore.fingerprint import (
    entity_fingerprint,
    on_demand_fingerprint,
    service_fingerprint,
    view_fingerprint,
)
from featurestore.on_demand import on_demand_diff, on_demand_to_dict
from featurestore.online.codec import view_layout_id
from featurestore.registry_state import (
    OnDemandRecord,
    RegistryState,
    ServiceRecord,
    VersionRecord,
    ViewRecord,
)
from featurestore.repo import RepoContents
from featurestore.sources import check_view_schema, complete_view, file_schema
from featurestore.types import DType

if TYPE_CHECKING:
    from featurestore.offline.bigquery.schema import SchemaReader


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
        try:  # a service no entity row can give keys for is refused now, not at training
            state.shared_key_dtypes(state.projection_view_names(service.projections))
        except RetrievalError as exc:
            raise DefinitionError(f"feature service {name!r}: {exc}") from None
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
