"""Feature definitions, shaped like Feast's: frozen, keyword-only, validated on construction.

A repo declares ``Entity``, ``FileSource`` / ``BigQuerySource`` / ``PushSource``,
``FeatureView`` and ``FeatureService`` objects in Python (and request-time transformations,
featurestore/on_demand.py); ``featurestore apply`` records them in the registry.
Every problem found here raises ``DefinitionError`` naming the definition at fault.

Everything the registry stores is checked here, at construction, including what does not
change values: ``description`` and ``owner`` are strings and ``tags`` map strings to strings
(Feast's shape). So a definition that passes construction can always be written to the
registry: ``apply`` never drops online data for a definition it then fails to store.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from featurestore.columns import ENTITY_TIMESTAMP, same_name, sql_name
from featurestore.errors import DefinitionError
from featurestore.types import (
    MAX_TTL,
    DType,
    ValueType,
    check_ttl,
    is_key_dtype,
    key_dtype_names,
    value_type_dtype,
)

if TYPE_CHECKING:
    from featurestore.on_demand import OnDemandFeatureView

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_PREFIX = "__fs_"
"""Names of columns featurestore adds (row positions, times, hidden inputs) start with it."""


def check_name(name: object, what: str) -> str:
    """Reject names that are not plain identifiers: they reach SQL, Redis keys and columns."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(
            f"{what} name {name!r} is not a valid name: use letters, digits and underscores, "
            "not starting with a digit"
        )
    return name


def check_column_name(name: object, what: str) -> str:
    """``check_name`` for a name that becomes a column (a field, a join key, an aggregation),
    which must also not start with ``RESERVED_PREFIX`` (it would collide with a column
    featurestore adds to the join or to materialization's rows)."""
    check_name(name, what)
    assert isinstance(name, str)  # check_name refuses anything else
    if name.startswith(RESERVED_PREFIX):
        raise DefinitionError(
            f"{what} name {name!r} uses the reserved prefix {RESERVED_PREFIX!r}; rename it"
        )
    return name


def suggest(name: str, candidates: Sequence[str]) -> str:
    """A ' (did you mean ...?)' hint listing close matches, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def format_ttl(ttl: timedelta | None) -> str:
    """A ttl as people write it: '2d', '12h', '1d 6h 30m'; 'none' for no ttl (None or 0)."""
    if not ttl:
        return "none"
    rest = ttl // timedelta(microseconds=1)
    parts = []
    for unit, size in (("d", 86_400_000_000), ("h", 3_600_000_000), ("m", 60_000_000)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    if rest:
        parts.append(f"{rest / 1e6:g}s")
    return " ".join(parts)


def _freeze(obj: Any, attr: str, value: Any) -> None:
    object.__setattr__(obj, attr, value)


def _as_list(value: object, what: str) -> tuple[Any, ...]:
    """``value`` (a list, tuple or other iterable, not a string) as a tuple."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise DefinitionError(f"{what} must be a list, got {value!r}")
    return tuple(value)


def _check_documentation(obj: Any, what: str) -> None:
    """Check and freeze what the registry stores beside a definition: description, tags,
    owner (when the class has one). Tags map strings to strings, as in Feast."""
    for attr in ("description", "owner"):
        value = getattr(obj, attr, "")
        if not isinstance(value, str):
            raise DefinitionError(f"{what}: {attr} must be a string, got {value!r}")
    tags = obj.tags
    if not isinstance(tags, Mapping):
        raise DefinitionError(f"{what}: tags must be a mapping of strings, got {tags!r}")
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise DefinitionError(
                f"{what}: tag {key!r}: {value!r} is not a string mapped to a string "
                "(tags are stored as text; convert the value with str())"
            )
    _freeze(obj, "tags", dict(tags))


@dataclass(frozen=True, kw_only=True, eq=True)
class Entity:
    """A business object features are keyed by, e.g. ``Entity(name="user", join_keys=["user_id"])``.

    ``join_keys`` defaults to ``[name]``. A key's dtype comes from a ``Field`` of the same name
    in a view's schema (as in Feast), else from ``value_type`` (Feast's ``ValueType``, for an
    entity of one join key; a view's ``Field`` must then agree with it, as in Feast), else
    from the source's Parquet schema at apply.
    """

    name: str
    join_keys: Sequence[str] = ()
    value_type: ValueType | None = None
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "entity")
        if isinstance(self.join_keys, str):
            keys: tuple[Any, ...] = (self.join_keys,)
        else:
            keys = _as_list(self.join_keys, f"entity {self.name!r}: join_keys") or (self.name,)
        for key in keys:
            check_column_name(key, f"entity {self.name!r}: join key")
            if same_name(key, ENTITY_TIMESTAMP):
                # Online reads would work and no training set could: its entity rows hold
                # each row's time in that column.
                raise DefinitionError(
                    f"entity {self.name!r}: join key {key!r} is named like the entity rows' "
                    f"time column {ENTITY_TIMESTAMP!r}; name the key otherwise"
                )
        if len(set(keys)) != len(keys):
            raise DefinitionError(f"entity {self.name!r}: a join key is listed twice in {keys}")
        _freeze(self, "join_keys", keys)
        if self.value_type is not None:
            value_type_dtype(self.value_type, f"entity {self.name!r}")
            if len(keys) > 1:
                raise DefinitionError(
                    f"entity {self.name!r}: value_type types one join key (as in Feast) and "
                    f"this entity has {len(keys)}; declare each key's dtype with a Field in "
                    "the views' schema instead"
                )
        _check_documentation(self, f"entity {self.name!r}")

    @property
    def key_dtype(self) -> DType | None:
        """The dtype ``value_type`` declares for the join key (None when unspecified)."""
        if self.value_type is None:
            return None
        return value_type_dtype(self.value_type, f"entity {self.name!r}")

    __hash__ = None  # type: ignore[assignment]  # unhashable: holds dicts and lists (as Feast's)


@dataclass(frozen=True, kw_only=True)
class Field:
    """A typed column of a feature view: ``Field(name="amount", dtype=Float64)``."""

    name: str
    dtype: DType
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_column_name(self.name, "field")
        if not isinstance(self.dtype, DType):
            raise DefinitionError(
                f"field {self.name!r}: unsupported dtype {self.dtype!r}; "
                "use a type from featurestore.types (Int32, Int64, Float32, Float64, String, "
                "Bool, UnixTimestamp)"
            )
        _check_documentation(self, f"field {self.name!r}")

    __hash__ = None  # type: ignore[assignment]  # unhashable: holds dicts and lists (as Feast's)


def _no_created_column_when_empty(source: Any) -> None:
    """``created_timestamp_column=""`` is Feast's default, meaning no created column: None."""
    if source.created_timestamp_column == "":
        _freeze(source, "created_timestamp_column", None)


@dataclass(frozen=True, kw_only=True)
class FileSource:
    """Parquet files (a file, a folder or a glob) with an event time and maybe a created time.

    A relative ``path`` is resolved against the repo folder, so a clone elsewhere reads the
    same data and keeps the same fingerprints.
    """

    path: str
    timestamp_field: str
    created_timestamp_column: str | None = None
    name: str | None = None
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    field_mapping: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.name is not None and not isinstance(self.name, str):
            raise DefinitionError(f"FileSource: name must be a string, got {self.name!r}")
        _refuse_feast_options(
            f"FileSource {self.name or self.path!r}", {"field_mapping": self.field_mapping}
        )
        if not isinstance(self.path, str) or not self.path:
            raise DefinitionError(f"FileSource {self.name or ''}: path must be a non-empty string")
        check_name(self.timestamp_field, f"source {self.path!r}: timestamp_field")
        _no_created_column_when_empty(self)
        if self.created_timestamp_column is not None:
            check_name(self.created_timestamp_column, f"source {self.path!r}: created column")
        _check_documentation(self, f"source {self.path!r}")

    __hash__ = None  # type: ignore[assignment]  # unhashable: holds dicts and lists (as Feast's)


@dataclass(frozen=True, kw_only=True)
class BigQuerySource:
    """A BigQuery table (``project.dataset.table``) or query, with its timestamp columns."""

    timestamp_field: str
    table: str | None = None
    query: str | None = None
    created_timestamp_column: str | None = None
    name: str | None = None
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    field_mapping: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.name is not None and not isinstance(self.name, str):
            raise DefinitionError(f"BigQuerySource: name must be a string, got {self.name!r}")
        _refuse_feast_options(
            f"BigQuerySource {self.name or self.table or 'query'!r}",
            {"field_mapping": self.field_mapping},
        )
        if (self.table is None) == (self.query is None):
            raise DefinitionError(
                f"BigQuerySource {self.name or ''}: give exactly one of table= or query="
            )
        if self.query is not None and (not isinstance(self.query, str) or not self.query.strip()):
            raise DefinitionError(
                f"BigQuerySource {self.name or ''}: query must be SQL text, got {self.query!r}"
            )
        if self.table is not None and not (
            isinstance(self.table, str)
            and re.match(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){1,2}$", self.table)
        ):
            raise DefinitionError(
                f"BigQuerySource: table {self.table!r} is not of the form "
                "project.dataset.table or dataset.table"
            )
        check_name(self.timestamp_field, "BigQuerySource: timestamp_field")
        _no_created_column_when_empty(self)
        if self.created_timestamp_column is not None:
            check_name(self.created_timestamp_column, "BigQuerySource: created column")
        _check_documentation(self, f"BigQuerySource {self.table or self.name or ''}".rstrip())

    __hash__ = None  # type: ignore[assignment]  # unhashable: holds dicts and lists (as Feast's)


Source = FileSource | BigQuerySource


@dataclass(frozen=True, kw_only=True)
class PushSource:
    """Rows pushed by an application or a stream (``FeatureStore.push``, ``POST /push``),
    stored in ``batch_source``, which a view over this source reads like any other source.

    ``batch_source`` must be a ``FileSource`` of a file or a folder (not a glob), where
    pushed rows are appended as new Parquet files (featurestore/push.py), or a
    ``BigQuerySource``, which takes online pushes only.
    """

    name: str
    batch_source: Source
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "push source")
        if not isinstance(self.batch_source, (FileSource, BigQuerySource)):
            raise DefinitionError(
                f"push source {self.name!r}: batch_source must be a FileSource or "
                f"BigQuerySource, got {self.batch_source!r}"
            )
        if isinstance(self.batch_source, FileSource) and any(
            ch in self.batch_source.path for ch in "*?["
        ):
            raise DefinitionError(
                f"push source {self.name!r}: batch_source path {self.batch_source.path!r} is "
                "a glob; give a file or a folder, where pushed rows can be appended"
            )
        _check_documentation(self, f"push source {self.name!r}")

    __hash__ = None  # type: ignore[assignment]  # unhashable: holds dicts and lists (as Feast's)

    @property
    def timestamp_field(self) -> str:
        return self.batch_source.timestamp_field

    @property
    def created_timestamp_column(self) -> str | None:
        return self.batch_source.created_timestamp_column


def _refuse_feast_options(what: str, options: Mapping[str, object]) -> None:
    """Feast options featurestore deliberately does not support: named, never ignored."""
    why = {
        "enable_validation": "enable_validation= (featurestore checks every source's schema "
        "against the definition at apply and before every read)",
        "version": "version= (the registry versions every definition itself; "
        "'featurestore list' shows the versions)",
        "logging_config": "logging_config= (logging destinations: the prediction service "
        "logs what it serves to feature_log.path in featurestore.yaml)",
        "field_mapping": "field_mapping= (renaming source columns: name each Field as its "
        "source column is named, or rename the column where the source is written)",
    }
    for option, value in options.items():
        if value is not None and not (option == "field_mapping" and value == {}):
            raise DefinitionError(f"{what}: {why[option]} is not supported; remove {option}=")


@dataclass(frozen=True, kw_only=True)
class Aggregation:
    """A windowed aggregation of a source column, as Feast spells it:
    ``Aggregation(column="amount", function="sum", time_window=timedelta(hours=1))``.

    At time ``t`` it aggregates the key's events with ``floor(t - time_window, slide) <=
    event_ts < t`` (``floor`` to a multiple of ``slide_interval`` since the UTC epoch; the
    end is exclusive). ``function`` is one of count, sum, mean, min, max, stddev, variance,
    last (the accepted dtypes, outputs and edge cases: featurestore/aggregations/). The
    default ``slide_interval`` is the largest of 1 d, 1 h, 5 min, 1 min, 1 s that divides
    the window and is no larger than 5 minutes under 12 hours, 1 hour under 12 days, 1 day
    beyond. The default ``name`` is ``{function}_{column}_{window}``, the window in its
    largest whole unit (``sum_amount_1h``; 24 hours is ``1d``).
    """

    column: str
    function: str
    time_window: timedelta
    slide_interval: timedelta | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        from featurestore.aggregations.functions import FUNCTIONS
        from featurestore.aggregations.windows import (
            default_slide,
            format_window,
            microseconds,
        )

        what = f"aggregation {self.function!r} of {self.column!r}"
        check_column_name(self.column, f"{what}: column")
        if self.function not in FUNCTIONS:
            raise DefinitionError(
                f"{what}: unknown function {self.function!r}; use one of "
                f"{', '.join(FUNCTIONS)}{suggest(str(self.function), list(FUNCTIONS))}"
            )
        if not isinstance(self.time_window, timedelta) or self.time_window <= timedelta(0):
            raise DefinitionError(
                f"{what}: time_window must be a positive timedelta, got {self.time_window!r}"
            )
        if self.time_window > MAX_TTL:
            raise DefinitionError(
                f"{what}: time_window {self.time_window} is longer than the maximum "
                f"{MAX_TTL.days} days (the accepted time range)"
            )
        window = microseconds(self.time_window)
        if self.slide_interval is None:
            slide = default_slide(window)
            if slide is None:
                raise DefinitionError(
                    f"{what}: no default slide divides the window {self.time_window} (not a "
                    "whole number of seconds); give slide_interval"
                )
            _freeze(self, "slide_interval", timedelta(microseconds=slide))
        elif not isinstance(self.slide_interval, timedelta) or self.slide_interval <= timedelta(0):
            raise DefinitionError(
                f"{what}: slide_interval must be a positive timedelta, got {self.slide_interval!r}"
            )
        elif window % microseconds(self.slide_interval):
            raise DefinitionError(
                f"{what}: the window {self.time_window} is not a multiple of its slide "
                f"interval {self.slide_interval}; choose a slide that divides it"
            )
        if self.name is None:
            _freeze(self, "name", f"{self.function}_{self.column}_{format_window(window)}")
        check_column_name(self.name, f"{what}:")

    __hash__ = None  # type: ignore[assignment]

    @property
    def output_name(self) -> str:
        """The feature's name (``name``, or its default, set at construction)."""
        assert self.name is not None  # set in __post_init__
        return self.name

    @property
    def window_us(self) -> int:
        return self.time_window // timedelta(microseconds=1)

    @property
    def slide_us(self) -> int:
        assert self.slide_interval is not None  # set in __post_init__
        return self.slide_interval // timedelta(microseconds=1)

    def check_dtype(self, dtype: DType, view: str) -> None:
        """Refuse a column dtype the function does not accept, naming the view."""
        from featurestore.aggregations.functions import FUNCTIONS, accepted_names

        function = FUNCTIONS[self.function]
        if dtype not in function.accepts:
            raise DefinitionError(
                f"feature view {view!r}: aggregation {self.name!r} takes {self.function} of "
                f"column {self.column!r}, which is {dtype}; {self.function} accepts "
                f"{accepted_names(function)}"
            )

    def output_dtype(self, dtype: DType) -> DType:
        """The output's dtype over a column of ``dtype``."""
        from featurestore.aggregations.functions import FUNCTIONS

        return FUNCTIONS[self.function].output_dtype(dtype)


@dataclass(frozen=True, kw_only=True)
class FeatureView:
    """A group of features read from one source and keyed by one or more entities.

    ``ttl`` bounds how old a value may be: for an entity row at time ``t`` only source rows
    with ``t - ttl <= event_ts <= t`` count. ``ttl=None`` or ``timedelta(0)`` means no bound.
    Schema fields named like a join key declare that key's dtype and are not features.

    With ``aggregations=[Aggregation(...), ...]`` the view is *aggregated*: its features are
    the aggregations (named by them), computed from the source's raw events; its schema may
    only declare join keys and the aggregated columns' dtypes (an undeclared one is read
    from the source at ``apply``); and ``ttl`` is the maximum staleness of its online values
    (``now - the end of the last materialization``), not a bound on events. A view is plain
    or aggregated, never both.
    """

    name: str
    entities: Sequence[Entity]
    schema: Sequence[Field] = ()
    source: Source | PushSource
    ttl: timedelta | None = None
    aggregations: Sequence[Aggregation] = ()
    online: bool = True
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    enable_validation: bool | None = field(default=None, repr=False, compare=False)
    version: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name(self.name, "feature view")
        _refuse_feast_options(
            f"feature view {self.name!r}",
            {"enable_validation": self.enable_validation, "version": self.version},
        )
        entities = _as_list(self.entities, f"feature view {self.name!r}: entities")
        if not entities:
            raise DefinitionError(f"feature view {self.name!r}: needs at least one entity")
        for entity in entities:
            if not isinstance(entity, Entity):
                raise DefinitionError(
                    f"feature view {self.name!r}: entities must be Entity objects, got {entity!r}"
                )
        schema = _as_list(self.schema, f"feature view {self.name!r}: schema")
        seen: set[str] = set()
        for f in schema:
            if not isinstance(f, Field):
                raise DefinitionError(
                    f"feature view {self.name!r}: schema must hold Field objects, got {f!r}"
                )
            if f.name in seen:
                raise DefinitionError(
                    f"feature view {self.name!r}: field {f.name!r} is declared twice"
                )
            seen.add(f.name)
        keys = [k for e in entities for k in e.join_keys]
        if len(set(keys)) != len(keys):
            raise DefinitionError(f"feature view {self.name!r}: join keys repeat: {keys}")
        if not isinstance(self.source, (FileSource, BigQuerySource, PushSource)):
            raise DefinitionError(
                f"feature view {self.name!r}: source must be a FileSource, BigQuerySource "
                "or PushSource"
            )
        if self.ttl is not None:
            if not isinstance(self.ttl, timedelta):
                raise DefinitionError(
                    f"feature view {self.name!r}: ttl must be a timedelta or None, got {self.ttl!r}"
                )
            check_ttl(self.ttl, f"feature view {self.name!r}")
        typed = {e.join_keys[0]: e for e in entities if e.key_dtype is not None}
        for f in schema:
            if f.name in keys and not is_key_dtype(f.dtype):
                raise DefinitionError(
                    f"feature view {self.name!r}: join key {f.name!r} is declared {f.dtype}; "
                    f"a join key must be one of {key_dtype_names()}"
                )
            entity = typed.get(f.name)
            if entity is not None and entity.key_dtype != f.dtype:
                raise DefinitionError(
                    f"feature view {self.name!r}: join key {f.name!r} is declared {f.dtype} "
                    f"but entity {entity.name!r} has value_type {entity.value_type} "
                    f"({entity.key_dtype}); make them agree"
                )
        reserved = {self.source.timestamp_field, self.source.created_timestamp_column}
        for f in schema:
            if f.name in reserved and f.name not in keys:
                raise DefinitionError(
                    f"feature view {self.name!r}: field {f.name!r} is the source's timestamp "
                    "column, not a feature"
                )
        aggregations = _as_list(self.aggregations, f"feature view {self.name!r}: aggregations")
        _check_case_twins(
            f"feature view {self.name!r}",
            [*keys, *(f.name for f in schema), self.source.timestamp_field]
            + [self.source.created_timestamp_column or ""]
            + [a.column for a in aggregations if isinstance(a, Aggregation)],
        )
        if aggregations:
            self._check_aggregations(aggregations, schema, keys)
        elif not any(f.name not in keys for f in schema):
            raise DefinitionError(f"feature view {self.name!r}: declares no features")
        if not isinstance(self.online, bool):
            raise DefinitionError(
                f"feature view {self.name!r}: online must be True or False, got {self.online!r}"
            )
        _freeze(self, "entities", entities)
        _freeze(self, "schema", schema)
        _freeze(self, "aggregations", aggregations)
        _check_documentation(self, f"feature view {self.name!r}")

    __hash__ = None  # type: ignore[assignment]  # unhashable: holds dicts and lists (as Feast's)

    def _check_aggregations(
        self, aggregations: tuple[Any, ...], schema: tuple[Field, ...], keys: list[str]
    ) -> None:
        what = f"feature view {self.name!r}"
        if isinstance(self.source, PushSource):
            raise DefinitionError(
                f"{what}: an aggregated view cannot read push source {self.source.name!r}: "
                "pushes into aggregation views are not supported; aggregate its batch source "
                f"(source={self.source.name}.batch_source) and push to a plain view"
            )
        names: set[str] = set()
        for agg in aggregations:
            if not isinstance(agg, Aggregation):
                raise DefinitionError(
                    f"{what}: aggregations must be Aggregation objects, got {agg!r}"
                )
            if agg.name in names:
                raise DefinitionError(
                    f"{what}: two aggregations are named {agg.name!r}; give one a name="
                )
            if agg.name in keys:
                raise DefinitionError(
                    f"{what}: aggregation {agg.name!r} is named like a join key; give it "
                    "another name="
                )
            names.add(agg.output_name)
            if agg.column in keys:
                raise DefinitionError(
                    f"{what}: aggregation {agg.name!r} aggregates the join key {agg.column!r}; "
                    "aggregate a value column (count counts events, whatever column it names)"
                )
            if agg.column in (self.source.timestamp_field, self.source.created_timestamp_column):
                raise DefinitionError(
                    f"{what}: aggregation {agg.name!r} aggregates the source's timestamp "
                    f"column {agg.column!r}; aggregate a value column (count works on any)"
                )
        columns = {agg.column for agg in aggregations}
        for f in schema:
            if f.name not in keys and f.name not in columns:
                raise DefinitionError(
                    f"{what}: field {f.name!r} is neither a join key nor an aggregated column; "
                    "a view is plain or aggregated, never both: put plain features in "
                    "another view"
                )
        declared = {f.name: f.dtype for f in schema}
        for agg in aggregations:
            if agg.column in declared:
                agg.check_dtype(declared[agg.column], self.name)

    @property
    def is_aggregated(self) -> bool:
        """Whether the view's features are windowed aggregations of its source."""
        return bool(self.aggregations)

    @property
    def column_dtypes(self) -> dict[str, DType]:
        """The declared dtypes of aggregated columns (``apply`` declares every one)."""
        columns = {agg.column for agg in self.aggregations}
        return {f.name: f.dtype for f in self.schema if f.name in columns}

    @property
    def batch_source(self) -> Source:
        """Where the view's rows are stored: its source, or its push source's batch source."""
        return self.source.batch_source if isinstance(self.source, PushSource) else self.source

    @property
    def push_source(self) -> PushSource | None:
        return self.source if isinstance(self.source, PushSource) else None

    @property
    def join_keys(self) -> tuple[str, ...]:
        """The view's join keys, entity by entity, in declaration order."""
        return tuple(k for e in self.entities for k in e.join_keys)

    @property
    def features(self) -> tuple[Field, ...]:
        """The schema's feature fields (fields named like a join key are not features); of an
        aggregated view, its aggregations with their output dtypes (which need every
        aggregated column's dtype: declared, or read from the source by ``apply``)."""
        if self.aggregations:
            dtypes = self.column_dtypes
            missing = sorted({a.column for a in self.aggregations} - set(dtypes))
            if missing:
                raise DefinitionError(
                    f"feature view {self.name!r}: the dtype of aggregated column(s) {missing} "
                    "is known only once the view is applied (apply reads the source), or "
                    "declare it with a Field"
                )
            return tuple(
                Field(name=a.output_name, dtype=a.output_dtype(dtypes[a.column]))
                for a in self.aggregations
            )
        keys = set(self.join_keys)
        return tuple(f for f in self.schema if f.name not in keys)

    @property
    def feature_names(self) -> tuple[str, ...]:
        if self.aggregations:
            return tuple(a.output_name for a in self.aggregations)
        return tuple(f.name for f in self.features)

    @property
    def declared_key_dtypes(self) -> dict[str, DType]:
        """Key dtypes declared by schema fields named like a join key, else by the
        entity's ``value_type``."""
        keys = set(self.join_keys)
        declared = {f.name: f.dtype for f in self.schema if f.name in keys}
        for entity in self.entities:
            dtype = entity.key_dtype
            if dtype is not None:
                declared.setdefault(entity.join_keys[0], dtype)
        return declared

    @property
    def ttl_microseconds(self) -> int | None:
        """The ttl in microseconds, or None when there is no ttl (None or zero)."""
        if self.ttl is None or self.ttl == timedelta(0):
            return None
        return self.ttl // timedelta(microseconds=1)

    def feature(self, name: str) -> Field:
        """The feature field called ``name``; a DefinitionError suggests close names."""
        for f in self.features:
            if f.name == name:
                return f
        raise DefinitionError(
            f"feature view {self.name!r} has no feature {name!r}{suggest(name, self.feature_names)}"
        )

    def __getitem__(self, names: Sequence[str]) -> FeatureViewProjection:
        """``view[["f1", "f2"]]``: a projection of some of the view's features."""
        chosen = (names,) if isinstance(names, str) else _as_list(names, f"view {self.name!r}[...]")
        for n in chosen:
            if n not in self.feature_names:
                raise DefinitionError(
                    f"feature view {self.name!r} has no feature {n!r}"
                    f"{suggest(str(n), self.feature_names)}"
                )
        return FeatureViewProjection(view=self, features=chosen)

    def projection(self) -> FeatureViewProjection:
        """All of the view's features, as a projection."""
        return FeatureViewProjection(view=self, features=self.feature_names)


@dataclass(frozen=True, kw_only=True)
class FeatureViewProjection:
    """Some features of one view (or on-demand view), in the order they were asked for."""

    view: FeatureView | OnDemandFeatureView
    features: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.features:
            raise DefinitionError(f"projection of {self.view.name!r} selects no features")
        if len(set(self.features)) != len(self.features):
            raise DefinitionError(f"projection of {self.view.name!r} repeats a feature")

    __hash__ = None  # type: ignore[assignment]  # unhashable: holds dicts and lists (as Feast's)

    @property
    def refs(self) -> list[str]:
        """Feature references, ``"view:feature"``."""
        return [f"{self.view.name}:{f}" for f in self.features]


@dataclass(frozen=True, kw_only=True)
class FeatureService:
    """A named set of features a model consumes: ``FeatureService(name, features=[v, v[["f"]]])``."""

    name: str
    features: Sequence[FeatureView | OnDemandFeatureView | FeatureViewProjection]
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    logging_config: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        from featurestore.on_demand import OnDemandFeatureView

        check_name(self.name, "feature service")
        _refuse_feast_options(
            f"feature service {self.name!r}", {"logging_config": self.logging_config}
        )
        projections = []
        for item in _as_list(self.features, f"feature service {self.name!r}: features"):
            if isinstance(item, FeatureView | OnDemandFeatureView):
                projections.append(item.projection())
            elif isinstance(item, FeatureViewProjection):
                projections.append(item)
            else:
                raise DefinitionError(
                    f"feature service {self.name!r}: features must be feature views, "
                    f"on-demand feature views or projections like view[['f1']], got {item!r}"
                )
        if not projections:
            raise DefinitionError(f"feature service {self.name!r}: lists no features")
        names = [p.view.name for p in projections]
        if len(set(names)) != len(names):
            raise DefinitionError(
                f"feature service {self.name!r}: view listed twice; "
                "select all its features in one projection"
            )
        _freeze(self, "features", tuple(projections))
        _check_documentation(self, f"feature service {self.name!r}")

    __hash__ = None  # type: ignore[assignment]  # unhashable: holds dicts and lists (as Feast's)

    @property
    def projections(self) -> tuple[FeatureViewProjection, ...]:
        return self.features  # type: ignore[return-value]  # __post_init__ stored projections only

    @property
    def refs(self) -> list[str]:
        """Every feature reference the service serves, in order."""
        return [ref for p in self.projections for ref in p.refs]


def _check_case_twins(what: str, columns: Sequence[str]) -> None:
    """Refuse two source columns a view reads whose names differ only in case
    (``columns.sql_name``): whatever the source holds, the offline engines' SQL would read
    one for the other (DuckDB), or fail (BigQuery, even when ``apply`` could not read its
    schema)."""
    seen: dict[str, str] = {}
    for column in dict.fromkeys(c for c in columns if c):
        first = seen.setdefault(sql_name(column), column)
        if first != column:
            raise DefinitionError(
                f"{what}: columns {first!r} and {column!r} differ only in case, and the "
                "offline engines' SQL cannot tell them apart; rename one"
            )
