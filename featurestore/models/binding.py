"""A model's binding to the features it was trained on, and whether the registry still agrees.

At training time ``trained_views`` records, per view of the feature service, the projected
features, the projection's fingerprint (what changes those features' values), the whole
view's fingerprint and version, and its definition (an on-demand view's: its sources, request
fields, outputs and normalized code; ``kind="on_demand"``). ``check_binding`` later compares
that record with the registry: the model is still valid exactly when the service's
fingerprint is unchanged; otherwise it names each view that changed and how (source, ttl,
keys, fields; an on-demand view's code, sources or schema).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from featurestore.definition_dicts import view_to_dict
from featurestore.definitions import FeatureViewProjection
from featurestore.diff import view_diff
from featurestore.errors import ModelError
from featurestore.fingerprint import view_fingerprint
from featurestore.on_demand import on_demand_diff, on_demand_to_dict
from featurestore.registry_state import OnDemandRecord, RegistryState, ViewRecord

ON_DEMAND = "on_demand"


@dataclass(frozen=True)
class TrainedView:
    """One view of the feature service as it was when the model was trained."""

    name: str
    features: tuple[str, ...]
    projection_fingerprint: str
    view_fingerprint: str
    view_version: int
    key_dtypes: dict[str, str]
    definition: dict[str, Any]
    kind: str = "view"  # or ON_DEMAND

    def to_json(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "features": list(self.features),
            "projection_fingerprint": self.projection_fingerprint,
            "view_fingerprint": self.view_fingerprint,
            "view_version": self.view_version,
            "key_dtypes": dict(self.key_dtypes),
            "definition": self.definition,
        }
        # Only when set: artifacts written before on-demand views keep their checksums.
        return data if self.kind == "view" else {**data, "kind": self.kind}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainedView:
        return cls(
            name=data["name"],
            features=tuple(data["features"]),
            projection_fingerprint=data["projection_fingerprint"],
            view_fingerprint=data["view_fingerprint"],
            view_version=data["view_version"],
            key_dtypes=dict(data["key_dtypes"]),
            definition=dict(data["definition"]),
            kind=data.get("kind", "view"),
        )

    @property
    def reads(self) -> tuple[str, ...]:
        """The feature views whose online data serving this view needs: itself, or an
        on-demand view's source views."""
        if self.kind == ON_DEMAND:
            return tuple(s["view"] for s in self.definition["sources"])
        return (self.name,)


def trained_views(state: RegistryState, service_name: str) -> list[TrainedView]:
    """What a model trained now on ``service_name`` binds to, view by view."""
    service = state.service(service_name)
    views = []
    for projection in service.projections:
        if projection.view.name in state.on_demand:
            views.append(
                _trained_on_demand(state, state.on_demand[projection.view.name], projection)
            )
            continue
        record = state.view_record(projection.view.name)
        views.append(
            TrainedView(
                name=record.view.name,
                features=tuple(projection.features),
                projection_fingerprint=state.projection_fingerprint(projection),
                view_fingerprint=record.fingerprint,
                view_version=record.version,
                key_dtypes={k: d.name for k, d in record.key_dtypes.items()},
                definition=view_to_dict(record.view),
            )
        )
    return views


def _trained_on_demand(
    state: RegistryState, record: OnDemandRecord, projection: FeatureViewProjection
) -> TrainedView:
    return TrainedView(
        name=record.view.name,
        features=tuple(projection.features),
        projection_fingerprint=state.projection_fingerprint(projection),
        view_fingerprint=record.fingerprint,
        view_version=record.version,
        key_dtypes={},
        definition=on_demand_to_dict(record.view),
        kind=ON_DEMAND,
    )


@dataclass(frozen=True)
class ViewChange:
    """How one view of the service differs from what the model was trained on.

    ``change`` is "changed", "removed from the registry", "removed from the service" or
    "added to the service"; ``details`` say what changed; versions are the registry's view
    versions (None when unknown), ``history`` the registry's version history of the view.
    """

    view: str
    change: str
    details: tuple[str, ...] = ()
    trained_version: int | None = None
    current_version: int | None = None
    current_applied_at: str | None = None
    history: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"{self.view}: {self.change}"
        if self.trained_version is not None and self.current_version is not None:
            text += f" (trained on version {self.trained_version}, registry has version "
            text += f"{self.current_version}"
            text += f", applied {self.current_applied_at})" if self.current_applied_at else ")"
        return text


@dataclass(frozen=True)
class Binding:
    """The result of comparing a model's recorded fingerprints with the registry."""

    service: str
    trained_fingerprint: str
    current_fingerprint: str | None
    changes: tuple[ViewChange, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def matches(self) -> bool:
        """True when the registry would produce exactly the features the model was trained on."""
        return self.trained_fingerprint == self.current_fingerprint

    def mismatch(self) -> str | None:
        """None when the fingerprint matches; otherwise what changed, naming each view."""
        if self.matches:
            return None
        if self.current_fingerprint is None:
            return (
                f"the model was trained on feature service {self.service!r}, which is no "
                "longer applied in this repo; apply it again or retrain"
            )
        changed = "; ".join(
            c.describe() + (f" [{', '.join(c.details)}]" if c.details else "") for c in self.changes
        )
        return (
            f"feature service {self.service!r} changed since the model was trained "
            f"(fingerprint {self.trained_fingerprint[:12]} -> {self.current_fingerprint[:12]}): "
            f"{changed or 'its projections changed'}; retrain the model on the current features"
        )

    def require(self) -> None:
        """Raise ``ModelError`` naming the changed views unless the fingerprint matches."""
        message = self.mismatch()
        if message is not None:
            raise ModelError(message)


def check_binding(
    service: str, trained_fingerprint: str, views: Sequence[TrainedView], state: RegistryState
) -> Binding:
    """Compare a model's recorded binding with the registry's current definitions."""
    record = state.services.get(service)
    current_projections = (
        {p.view.name: p for p in record.service.projections} if record is not None else {}
    )
    changes: list[ViewChange] = []
    notes: list[str] = []
    for trained in views:
        if trained.kind == ON_DEMAND or trained.name in state.on_demand:
            change = _on_demand_change(trained, state, current_projections)
            if change is not None:
                changes.append(change)
            continue
        view_record = state.views.get(trained.name)
        if view_record is None:
            changes.append(ViewChange(trained.name, "removed from the registry"))
            continue
        if record is not None and trained.name not in current_projections:
            changes.append(ViewChange(trained.name, "removed from the service"))
            continue
        projection = current_projections.get(trained.name)
        features = tuple(projection.features) if projection else trained.features
        current_fp = view_fingerprint(view_record.view, view_record.key_dtypes, features)
        trained_version = next(
            (v.version for v in view_record.versions if v.fingerprint == trained.view_fingerprint),
            trained.view_version,
        )
        if current_fp != trained.projection_fingerprint:
            changes.append(
                ViewChange(
                    trained.name,
                    "changed",
                    _definition_changes(trained, view_record, features),
                    trained_version,
                    view_record.version,
                    view_record.versions[-1].applied_at if view_record.versions else None,
                    tuple(
                        f"version {v.version}: fingerprint {v.fingerprint[:12]}, "
                        f"applied {v.applied_at}"
                        for v in view_record.versions
                    ),
                )
            )
        elif view_record.fingerprint != trained.view_fingerprint:
            notes.append(
                f"{trained.name}: version {trained_version} -> {view_record.version}, but the "
                "features the model reads are unchanged"
            )
    trained_names = {v.name for v in views}
    for name in current_projections:
        if name not in trained_names:
            changes.append(ViewChange(name, "added to the service"))
    return Binding(
        service=service,
        trained_fingerprint=trained_fingerprint,
        current_fingerprint=record.fingerprint if record is not None else None,
        changes=tuple(changes),
        notes=tuple(notes),
    )


def _on_demand_change(
    trained: TrainedView,
    state: RegistryState,
    current_projections: Mapping[str, FeatureViewProjection],
) -> ViewChange | None:
    """How an on-demand view the model read changed (None: its projection did not)."""
    record = state.on_demand.get(trained.name)
    if record is None:
        return ViewChange(trained.name, "removed from the registry (as an on-demand view)")
    if trained.kind != ON_DEMAND:
        return ViewChange(trained.name, "changed", ("it is now an on-demand view",))
    if current_projections and trained.name not in current_projections:
        return ViewChange(trained.name, "removed from the service")
    projection = current_projections.get(trained.name)
    features = tuple(projection.features) if projection else trained.features
    current = state.projection_fingerprint(
        FeatureViewProjection(view=record.view, features=features)
    )
    if current == trained.projection_fingerprint:
        return None
    details = list(on_demand_diff(trained.definition, on_demand_to_dict(record.view)))
    details += [f"service now also reads {f}" for f in features if f not in trained.features]
    details += [f"service no longer reads {f}" for f in trained.features if f not in features]
    return ViewChange(
        trained.name,
        "changed",
        tuple(details or ["a source feature it reads changed"]),
        trained.view_version,
        record.version,
        record.versions[-1].applied_at if record.versions else None,
    )


def _definition_changes(
    trained: TrainedView, current: ViewRecord, current_features: Sequence[str]
) -> tuple[str, ...]:
    """What changed in the parts of a view that decide the model's feature values (worded
    by ``diff.view_diff``, as ``plan`` words them), and which features the service reads."""
    details = list(
        view_diff(
            trained.definition,
            view_to_dict(current.view),
            trained.key_dtypes,
            {k: d.name for k, d in current.key_dtypes.items()},
            features=trained.features,
        )
    )
    added = [f for f in current_features if f not in trained.features]
    dropped = [
        f for f in trained.features if f not in current_features and f in current.view.feature_names
    ]
    if added:
        details.append(f"service now also reads {', '.join(added)}")
    if dropped:
        details.append(f"service no longer reads {', '.join(dropped)}")
    return tuple(details)
