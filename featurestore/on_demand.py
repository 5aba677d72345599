"""Request-time transformations: ``RequestSource`` and ``on_demand_feature_view``, as in Feast.

::

    txn = RequestSource(name="txn", schema=[Field(name="amount", dtype=Float64)])

    @on_demand_feature_view(
        sources=[user_activity, txn],
        schema=[Field(name="amount_vs_avg_24h", dtype=Float64)],
    )
    def txn_features(inputs: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame()
        out["amount_vs_avg_24h"] = inputs["amount"] / inputs["amount_mean_24h"]
        return out

The function's input frame holds, per row, every feature of its source views (or of the
projections given, ``view[["f"]]``) under both its name and ``view__feature``, and every
request field by name; its output holds the schema's columns. Its features are referenced
like any other (``"txn_features:amount_vs_avg_24h"``). How they are computed, on both paths,
is featurestore/transforms.py; the code its fingerprint covers, featurestore/transform_code.py.

``mode="python"`` gives the function a dict of lists (one list per input column) and expects
a dict of lists back: the same input, the same output rule.

Decided at construction (``DefinitionError`` naming the view): the sources are feature views,
projections of them or request sources, each view once; no two inputs share a column name;
the schema declares at least one field. Feast options this project does not support
(``entities``/``write_to_online_store``, ``singleton``, ``explode``, ``aggregations``,
``input_schema``, ``track_metrics``, ``version``, ``org``) are refused, naming the option.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from featurestore.definitions import (
    FeatureView,
    FeatureViewProjection,
    Field,
    _as_list,
    _check_documentation,
    _freeze,
    check_name,
    suggest,
)
from featurestore.errors import DefinitionError
from featurestore.transform_code import code_sha256, transformation_code
from featurestore.types import dtype_by_name

MODES = ("pandas", "python")


@dataclass(frozen=True, kw_only=True)
class RequestSource:
    """Values only the request knows (e.g. the transaction's amount): ``RequestSource(name,
    schema=[Field(...)])``. Offline they are entity_df columns; online, entity row values
    (``/get-online-features`` and ``/predict``: in ``entities``), cast to their dtypes."""

    name: str
    schema: Sequence[Field]
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "request source")
        schema = _as_list(self.schema, f"request source {self.name!r}: schema")
        if not schema:
            raise DefinitionError(f"request source {self.name!r}: schema declares no field")
        names = []
        for f in schema:
            if not isinstance(f, Field):
                raise DefinitionError(
                    f"request source {self.name!r}: schema must hold Field objects, got {f!r}"
                )
            names.append(f.name)
        if len(set(names)) != len(names):
            raise DefinitionError(f"request source {self.name!r}: a field is declared twice")
        _freeze(self, "schema", schema)
        _check_documentation(self, f"request source {self.name!r}")

    __hash__ = None  # type: ignore[assignment]  # unhashable: holds dicts and lists (as Feast's)


OnDemandSource = FeatureView | FeatureViewProjection | RequestSource


@dataclass(frozen=True, kw_only=True)
class OnDemandFeatureView:
    """Features computed at request time from other views' features and request fields.

    Usually made with ``@on_demand_feature_view(...)`` (module docstring). ``udf`` is the
    function; a view read back from the registry has none (``udf=None``) and its ``code``
    only: training and serving import the function from the repo and check it against
    that code (featurestore/transforms.py).
    """

    name: str
    sources: Sequence[OnDemandSource]
    schema: Sequence[Field]
    udf: Callable[..., Any] | None = None
    mode: str = "pandas"
    code: str = field(default="", compare=False)
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""

    def __post_init__(self) -> None:
        what = f"on-demand feature view {self.name!r}"
        check_name(self.name, "on-demand feature view")
        if self.mode not in MODES:
            raise DefinitionError(f"{what}: mode must be 'pandas' or 'python', got {self.mode!r}")
        if self.udf is None and not self.code:
            raise DefinitionError(f"{what}: needs a function (udf)")
        if self.udf is not None and not callable(self.udf):
            raise DefinitionError(f"{what}: udf must be a function, got {self.udf!r}")
        sources = _as_list(self.sources, f"{what}: sources")
        projections, requests = [], []
        for source in sources:
            if isinstance(source, FeatureView):
                projections.append(source.projection())
            elif isinstance(source, FeatureViewProjection) and isinstance(source.view, FeatureView):
                projections.append(source)
            elif isinstance(source, RequestSource):
                requests.append(source)
            else:
                raise DefinitionError(
                    f"{what}: sources must be feature views, projections like view[['f']] or "
                    f"request sources, got {source!r}"
                )
        if not projections and not requests:
            raise DefinitionError(f"{what}: needs at least one source")
        views = [p.view.name for p in projections]
        if len(set(views)) != len(views):
            raise DefinitionError(f"{what}: a source view is listed twice; list it once")
        schema = _as_list(self.schema, f"{what}: schema")
        if not schema:
            raise DefinitionError(f"{what}: schema declares no output field")
        outputs = []
        for f in schema:
            if not isinstance(f, Field):
                raise DefinitionError(f"{what}: schema must hold Field objects, got {f!r}")
            outputs.append(f.name)
        if len(set(outputs)) != len(outputs):
            raise DefinitionError(f"{what}: an output field is declared twice")
        _freeze(self, "sources", tuple(projections) + tuple(requests))
        _freeze(self, "schema", schema)
        _check_input_names(what, self.source_projections, self.request_sources)
        _check_documentation(self, what)

    __hash__ = None  # type: ignore[assignment]  # unhashable: holds dicts and lists (as Feast's)

    @property
    def source_projections(self) -> tuple[FeatureViewProjection, ...]:
        """The feature views it reads, as projections (a whole view: all its features)."""
        return tuple(s for s in self.sources if isinstance(s, FeatureViewProjection))

    @property
    def request_sources(self) -> tuple[RequestSource, ...]:
        return tuple(s for s in self.sources if isinstance(s, RequestSource))

    @property
    def request_fields(self) -> tuple[Field, ...]:
        """Every request field it reads, source by source."""
        return tuple(f for r in self.request_sources for f in r.schema)

    @property
    def features(self) -> tuple[Field, ...]:
        """Its output fields (the features it serves)."""
        return tuple(self.schema)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.schema)

    def feature(self, name: str) -> Field:
        """The output field called ``name``; a DefinitionError suggests close names."""
        for f in self.schema:
            if f.name == name:
                return f
        raise DefinitionError(
            f"on-demand feature view {self.name!r} has no feature {name!r}"
            f"{suggest(name, self.feature_names)}"
        )

    def __getitem__(self, names: Sequence[str]) -> FeatureViewProjection:
        """``view[["f1"]]``: a projection of some of its outputs."""
        chosen = (names,) if isinstance(names, str) else _as_list(names, f"view {self.name!r}")
        for n in chosen:
            self.feature(n)
        return FeatureViewProjection(view=self, features=chosen)

    def projection(self) -> FeatureViewProjection:
        """All its outputs, as a projection."""
        return FeatureViewProjection(view=self, features=self.feature_names)

    def transformation_code(self) -> str:
        """The normalized code its fingerprint covers (featurestore/transform_code.py),
        computed from ``udf`` on first use (once the repo file is fully imported)."""
        if not self.code:
            assert self.udf is not None  # __post_init__: a udf or a code
            _freeze(self, "code", transformation_code(self.udf, f"on-demand view {self.name!r}"))
        return self.code

    @property
    def code_sha256(self) -> str:
        return code_sha256(self.transformation_code())


def _check_input_names(
    what: str, projections: Sequence[FeatureViewProjection], requests: Sequence[RequestSource]
) -> None:
    """No two inputs of the function's frame may share a column name."""
    owners: dict[str, str] = {}
    columns = [
        (name, f"feature '{p.view.name}:{f}'")
        for p in projections
        for f in p.features
        for name in (f, f"{p.view.name}__{f}")
    ] + [(f.name, f"request field '{r.name}:{f.name}'") for r in requests for f in r.schema]
    for name, owner in columns:
        if name in owners:
            raise DefinitionError(
                f"{what}: {owners[name]} and {owner} would share the input column {name!r}; "
                "rename one, or select features with view[['f']]"
            )
        owners[name] = owner


_REFUSED = {
    "entities": "entities (Feast's write_to_online_store): transformations run at request "
    "time here, never stored",
    "write_to_online_store": "write_to_online_store: transformations run at request time "
    "here, never stored",
    "singleton": "singleton",
    "explode": "explode",
    "aggregations": "aggregations on an on-demand view (declare them on a FeatureView)",
    "input_schema": "input_schema",
    "track_metrics": "track_metrics",
    "version": "version= (the registry versions every definition itself)",
    "org": "org",
}


def on_demand_feature_view(
    *,
    schema: Sequence[Field],
    sources: Sequence[OnDemandSource],
    name: str | None = None,
    mode: str = "pandas",
    description: str = "",
    tags: Mapping[str, str] | None = None,
    owner: str = "",
    **feast_options: Any,
) -> Callable[[Callable[..., Any]], OnDemandFeatureView]:
    """Decorate a function into an ``OnDemandFeatureView`` named after it (or ``name``).

    Feast's other options are refused when set (module docstring), naming the option.
    """
    for option, value in feast_options.items():
        if option not in _REFUSED:
            raise DefinitionError(
                f"on_demand_feature_view: unknown option {option!r}"
                f"{suggest(option, ['schema', 'sources', 'name', 'mode', 'description'])}"
            )
        if value not in (None, False, "", [], {}):
            raise DefinitionError(
                f"on_demand_feature_view {name or ''}: {_REFUSED[option]} is not supported; "
                f"remove {option}="
            )

    def decorate(function: Callable[..., Any]) -> OnDemandFeatureView:
        return OnDemandFeatureView(
            name=name or str(getattr(function, "__name__", "")),
            sources=sources,
            schema=schema,
            udf=function,
            mode=mode,
            description=description,
            tags=tags or {},
            owner=owner,
        )

    return decorate


# --- serialization (the registry stores the code, never the function) ----------------


def _fields_to_dict(fields: Sequence[Field]) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "dtype": f.dtype.name, "description": f.description, "tags": dict(f.tags)}
        for f in fields
    ]


def _fields_from_dict(fields: Sequence[Mapping[str, Any]]) -> list[Field]:
    return [
        Field(
            name=f["name"],
            dtype=dtype_by_name(f["dtype"]),
            description=f.get("description", ""),
            tags=f.get("tags", {}),
        )
        for f in fields
    ]


def on_demand_to_dict(v: OnDemandFeatureView) -> dict[str, Any]:
    code = v.transformation_code()
    return {
        "name": v.name,
        "sources": [
            {"view": p.view.name, "features": list(p.features)} for p in v.source_projections
        ],
        "request_sources": [
            {
                "name": r.name,
                "schema": _fields_to_dict(r.schema),
                "description": r.description,
                "tags": dict(r.tags),
                "owner": r.owner,
            }
            for r in v.request_sources
        ],
        "schema": _fields_to_dict(v.schema),
        "mode": v.mode,
        "function": getattr(v.udf, "__qualname__", None) if v.udf else None,
        "code": code,
        "code_sha256": code_sha256(code),
        "description": v.description,
        "tags": dict(v.tags),
        "owner": v.owner,
    }


def on_demand_from_dict(
    d: Mapping[str, Any], views: Mapping[str, FeatureView]
) -> OnDemandFeatureView:
    """The view as the registry stores it: its code, no function (``udf=None``)."""
    sources: list[OnDemandSource] = [views[s["view"]][s["features"]] for s in d["sources"]]
    sources += [
        RequestSource(
            name=r["name"],
            schema=_fields_from_dict(r["schema"]),
            description=r["description"],
            tags=r["tags"],
            owner=r["owner"],
        )
        for r in d["request_sources"]
    ]
    if code_sha256(d["code"]) != d["code_sha256"]:
        raise DefinitionError(
            f"on-demand feature view {d['name']!r}: its stored code does not match its hash"
        )
    return OnDemandFeatureView(
        name=d["name"],
        sources=sources,
        schema=_fields_from_dict(d["schema"]),
        mode=d["mode"],
        code=d["code"],
        description=d["description"],
        tags=d["tags"],
        owner=d["owner"],
    )


def on_demand_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, ...]:
    """What changed between two stored definitions of an on-demand view, one line each."""
    details = []
    if old["code_sha256"] != new["code_sha256"]:
        details.append(
            f"transformation code: {old['code_sha256'][:12]} -> {new['code_sha256'][:12]}"
        )
    for key in ("sources", "request_sources", "schema", "mode"):
        if old[key] != new[key]:
            details.append(f"{key.replace('_', ' ')} changed")
    details += [
        f"{k}: {old[k]!r} -> {new[k]!r}"
        for k in ("description", "tags", "owner")
        if old[k] != new[k]
    ]
    return tuple(details)
