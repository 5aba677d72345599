"""Shared hypothesis generators: feature views with messy sources, and entity tables.

The data is drawn on a coarse grid (whole minutes, a handful of keys) so that what the
semantics must decide actually happens: duplicate event times, created-time ties and
complete ties, missing created times, null values and NaN, null keys and null event times,
late rows (created long after their event), entity times exactly at ``event_ts`` and at
``t - ttl``, before any data, keys with no data, colliding composite keys (``"1"+"23"`` vs
``"12"+"3"``), int and string keys, int32-stored keys, several views with different ttls
including ``ttl=0`` and none, views of different entities in one request.

``build_repo(scenario, path)`` writes a scenario as a real feature repo (Parquet files,
featurestore.yaml, an applied registry with a service ``everything`` over all views) and
returns its ``FeatureStore``. ``repo_source(views)`` renders the same views as a repo's
Python file (for repos whose definitions must be importable: request-time views, whose
functions serving imports from the repo).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests.reference import RefView, SourceRow

BASE = datetime(2024, 1, 1, tzinfo=UTC)


def minute(n: int) -> datetime:
    return BASE + timedelta(minutes=n)


# Entities and their key columns: an int key, a string key, and a composite of two strings
# whose concatenations collide.
ENTITY_KEYS = {"user": ["user_id"], "merchant": ["merchant"], "pair": ["merchant", "region"]}
KEY_VALUES: dict[str, list[Any]] = {
    "user_id": [1, 2, 3, 12],
    "merchant": ["1", "12", "a"],
    "region": ["23", "3", ""],
}
# Feature kinds: (dtype name, value strategy).
FEATURE_KINDS: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    "count": ("Int64", st.integers(-(2**40), 2**40)),
    "small": ("Int32", st.integers(-1000, 1000)),
    "amount": ("Float64", st.floats(allow_infinity=False) | st.just(float("nan"))),
    "rate": ("Float32", st.sampled_from([0.5, -1.25, 3.0, 0.0]) | st.just(float("nan"))),
    "label": ("String", st.text(max_size=3)),
    "flag": ("Bool", st.booleans()),
    "seen_at": ("UnixTimestamp", st.integers(-5, 5).map(minute)),
}


@dataclass
class ViewCase:
    """A generated view: the reference's view plus how its files are physically written."""

    ref: RefView
    entity: str
    dtypes: dict[str, str]  # feature -> dtype name
    int32_keys: bool  # store int keys as int32 in the Parquet files
    timestamp_unit: str  # "us" or "ns"
    naive_timestamps: bool  # store event/created times without a time zone


@dataclass
class Scenario:
    views: list[ViewCase]
    entity_rows: list[dict[str, Any]]
    as_of: str
    full_feature_names: bool
    with_timestamps: bool = False  # also ask for each view's winner's event/created times


def _maybe_null(strategy: st.SearchStrategy[Any], p_null: int = 8) -> st.SearchStrategy[Any]:
    """``strategy`` with a null about once in ``p_null`` draws."""
    return st.integers(1, p_null).flatmap(lambda n: st.none() if n == 1 else strategy)


@st.composite
def source_rows(
    draw: st.DrawFn, keys: list[str], features: dict[str, str], has_created: bool
) -> SourceRow:
    row_keys = {k: draw(_maybe_null(st.sampled_from(KEY_VALUES[k]), 20)) for k in keys}
    event = draw(_maybe_null(st.integers(0, 8), 20))
    created = None
    if has_created:
        # Usually created at or after the event (late rows up to 6 minutes), sometimes missing.
        offset = draw(_maybe_null(st.sampled_from([0, 0, 1, 6, -1]), 6))
        created = None if offset is None or event is None else minute(event + offset)
    values = {name: draw(_maybe_null(FEATURE_KINDS[kind][1], 6)) for name, kind in features.items()}
    return SourceRow(row_keys, None if event is None else minute(event), created, values)


@st.composite
def view_cases(draw: st.DrawFn, name: str, entity: str) -> ViewCase:
    keys = ENTITY_KEYS[entity]
    kinds = draw(
        st.lists(st.sampled_from(sorted(FEATURE_KINDS)), min_size=1, max_size=3, unique=True)
    )
    features = {f"{name}_{kind}": kind for kind in kinds}
    has_created = draw(st.booleans()) or draw(st.booleans())
    ttl_minutes = draw(st.sampled_from([None, 0, 1, 2, 4]))
    n_files = draw(st.integers(1, 2))
    files = [
        draw(st.lists(source_rows(keys, features, has_created), min_size=1, max_size=12))
        for _ in range(n_files)
    ]
    # Complete ties: copies of drawn rows (same keys, event and created time) with other
    # values, in the same file or the other one; the later file, then the later row, wins.
    copies = st.tuples(
        st.integers(0, 99), st.integers(0, 1), source_rows(keys, features, has_created)
    )
    for pick, target, fresh in draw(st.lists(copies, max_size=4)):
        rows = [r for f in files for r in f]
        original = rows[pick % len(rows)]
        twin = SourceRow(dict(original.keys), original.event_ts, original.created_ts, fresh.values)
        files[target % n_files].append(twin)
    ref = RefView(
        name=name,
        join_keys=keys,
        ttl=None if ttl_minutes is None else timedelta(minutes=ttl_minutes),
        features=list(features),
        files=files,
        has_created=has_created,
    )
    return ViewCase(
        ref=ref,
        entity=entity,
        dtypes={f: FEATURE_KINDS[k][0] for f, k in features.items()},
        int32_keys=draw(st.booleans()),
        timestamp_unit=draw(st.sampled_from(["us", "ns"])),
        naive_timestamps=draw(st.booleans()),
    )


@st.composite
def entity_rows(draw: st.DrawFn, max_rows: int = 15) -> list[dict[str, Any]]:
    """Entity rows over every key column; times from before any data to after it, on the grid.

    Duplicates come naturally from the small pools; ``extra`` is a pass-through column.
    """
    row = st.fixed_dictionaries(
        {
            "user_id": _maybe_null(st.sampled_from([*KEY_VALUES["user_id"], 99]), 25),
            "merchant": _maybe_null(st.sampled_from([*KEY_VALUES["merchant"], "zz"]), 25),
            "region": st.sampled_from(KEY_VALUES["region"]),
            "event_timestamp": _maybe_null(st.integers(-1, 11).map(minute), 30),
            "extra": st.integers(0, 5),
        }
    )
    return draw(st.lists(row, min_size=1, max_size=max_rows))


@st.composite
def scenarios(draw: st.DrawFn, as_of: str | None = None) -> Scenario:
    """One to three views (of any entities) and an entity table to join them onto."""
    entities = draw(st.lists(st.sampled_from(sorted(ENTITY_KEYS)), min_size=1, max_size=3))
    views = [draw(view_cases(f"v{i}", entity)) for i, entity in enumerate(entities)]
    return Scenario(
        views=views,
        entity_rows=draw(entity_rows()),
        as_of=as_of or draw(st.sampled_from(["event", "created"])),
        full_feature_names=draw(st.booleans()),
        with_timestamps=draw(st.booleans()),
    )


@st.composite
def late_rows(
    draw: st.DrawFn, case: ViewCase, last_end: datetime, created_floor: datetime
) -> list[SourceRow]:
    """A Parquet file appended after a materialization run to ``last_end``: rows newer than
    ``last_end`` and, when the view has a created column, late rows (an event time at or
    before ``last_end``, created at or after ``created_floor``: after every earlier row)."""
    kinds = {f: f.removeprefix(f"{case.ref.name}_") for f in case.ref.features}
    rows = draw(st.lists(source_rows(case.ref.join_keys, kinds, case.ref.has_created), max_size=8))
    for row in rows:
        if row.event_ts is None or row.event_ts > last_end:
            continue
        if case.ref.has_created:
            row.created_ts = created_floor + timedelta(minutes=draw(st.integers(0, 3)))
        else:  # without a created time a late row cannot be told apart: only newer rows
            row.event_ts = last_end + timedelta(minutes=draw(st.integers(1, 4)))
    return rows


# --- writing a scenario as a real repo --------------------------------------------------


def _timestamps(values: list[datetime | None], case: ViewCase) -> Any:
    import pyarrow as pa

    tz = None if case.naive_timestamps else "UTC"
    plain = [None if v is None else v.astimezone(UTC).replace(tzinfo=None) for v in values]
    return pa.array(plain, pa.timestamp("us")).cast(pa.timestamp(case.timestamp_unit, tz=tz))


def write_view_files(case: ViewCase, folder: Path) -> None:
    """Write a view's files (``part-0.parquet``, ...) with the physical types the case asks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featurestore.types import dtype_by_name

    folder.mkdir(parents=True, exist_ok=True)
    for i, rows in enumerate(case.ref.files):
        columns: dict[str, Any] = {}
        for key in case.ref.join_keys:
            key_type = (
                pa.string() if key != "user_id" else (pa.int32() if case.int32_keys else pa.int64())
            )
            columns[key] = pa.array([r.keys[key] for r in rows], key_type)
        columns["event_ts"] = _timestamps([r.event_ts for r in rows], case)
        if case.ref.has_created:
            columns["created_ts"] = _timestamps([r.created_ts for r in rows], case)
        for name, dtype in case.dtypes.items():
            columns[name] = pa.array(
                [r.values[name] for r in rows], dtype_by_name(dtype).to_arrow()
            )
        pq.write_table(pa.table(columns), folder / f"part-{i}.parquet")


def build_repo(scenario: Scenario, path: Path) -> Any:
    """Write ``scenario`` as a feature repo under ``path``, apply it, return its FeatureStore."""
    from featurestore import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource
    from featurestore.registry import Registry
    from featurestore.repo import RepoContents
    from featurestore.types import dtype_by_name

    path.mkdir(parents=True, exist_ok=True)
    (path / "featurestore.yaml").write_text(
        "project: props\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
    )
    entities = {name: Entity(name=name, join_keys=keys) for name, keys in ENTITY_KEYS.items()}
    contents = RepoContents(entities=entities)
    for case in scenario.views:
        write_view_files(case, path / "data" / case.ref.name)
        schema = [Field(name=f, dtype=dtype_by_name(d)) for f, d in case.dtypes.items()]
        contents.views[case.ref.name] = FeatureView(
            name=case.ref.name,
            entities=[entities[case.entity]],
            schema=schema,
            source=FileSource(
                path=f"data/{case.ref.name}",
                timestamp_field="event_ts",
                created_timestamp_column="created_ts" if case.ref.has_created else None,
            ),
            ttl=case.ref.ttl,
        )
    contents.services["everything"] = FeatureService(
        name="everything", features=list(contents.views.values())
    )
    Registry(path / "data" / "registry.json", "props").apply(contents, path)
    return FeatureStore(path)


def entity_table(rows: list[dict[str, Any]]) -> Any:
    """The entity rows as a pyarrow Table with typed columns (int64 user ids, UTC times)."""
    import pyarrow as pa

    return pa.table(
        {
            "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
            "merchant": pa.array([r["merchant"] for r in rows], pa.string()),
            "region": pa.array([r["region"] for r in rows], pa.string()),
            "event_timestamp": pa.array(
                [r["event_timestamp"] for r in rows], pa.timestamp("us", tz="UTC")
            ),
            "extra": pa.array([r["extra"] for r in rows], pa.int64()),
        }
    )


# --- corrupted documents: featurestore.yaml and registry.json, edited as a hostile user would

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["", "Int64", "Float64", "duckdb", "redis", "x:y", "2h", "-1", "abc"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=5,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path from the root to a node of a JSON-like document (the root is ``()``)."""
    paths = [prefix]
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in children:
        paths += _paths(child, (*prefix, key))
    return paths


def _misspell(draw: st.DrawFn, key: str) -> str:
    edits = [key + "s", key[:-1], key.upper(), key.replace("_", ""), key[1:] + key[:1]]
    return draw(st.sampled_from([e for e in edits if e and e != key] or [key + "x"]))


@st.composite
def corrupted(draw: st.DrawFn, document: Any) -> Any:
    """A deep copy of ``document`` with one to three hostile edits.

    Each edit picks a node and replaces it with another JSON value (a scalar of another
    kind, a list, a mapping, a value moved from elsewhere in the document), removes it,
    renames its key (a misspelling) or adds a sibling key. The whole document may be
    replaced too (``null``, ``[]``, a number).
    """
    import copy

    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        action = draw(st.sampled_from(["replace", "move", "remove", "rename", "add"]))
        if not path:
            if action in ("replace", "move"):
                doc = draw(JSON_VALUES)
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if action == "replace":
            parent[key] = draw(JSON_VALUES)
        elif action == "move":
            source = draw(st.sampled_from(_paths(doc)))
            value = doc
            for step in source:
                value = value[step]
            parent[key] = copy.deepcopy(value)
        elif action == "remove":
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[_misspell(draw, str(key))] = parent.pop(key)
        elif action == "add" and isinstance(parent, dict):
            parent[_misspell(draw, str(key))] = draw(JSON_VALUES)
    return doc


def repo_source(views: list[ViewCase], push: Collection[str] = ()) -> str:
    """The views (and their entities) as a repo's Python definitions; views named in
    ``push`` read a ``PushSource`` named ``<view>_push`` over their files."""
    lines = [
        "from datetime import timedelta",
        "",
        "import pandas as pd",
        "",
        "from featurestore import (",
        "    Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource,",
        "    on_demand_feature_view,",
        ")",
        "from featurestore.types import Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp",
        "",
    ]
    lines += [
        f"{name} = Entity(name={name!r}, join_keys={keys!r})" for name, keys in ENTITY_KEYS.items()
    ]
    for case in views:
        name = case.ref.name
        created = "'created_ts'" if case.ref.has_created else "None"
        source = (
            f"FileSource(path='data/{name}', timestamp_field='event_ts', "
            f"created_timestamp_column={created})"
        )
        if name in push:
            source = f"PushSource(name='{name}_push', batch_source={source})"
        ttl = (
            "None"
            if case.ref.ttl is None
            else f"timedelta(seconds={case.ref.ttl.total_seconds()!r})"
        )
        schema = ", ".join(f"Field(name={f!r}, dtype={d})" for f, d in case.dtypes.items())
        lines.append(
            f"{name} = FeatureView(name={name!r}, entities=[{case.entity}], schema=[{schema}], "
            f"source={source}, ttl={ttl})"
        )
    return "\n".join(lines) + "\n"


# --- aggregated views ------------------------------------------------------------------------

# (column, dtype name, moderate values, extreme values): moderate values are dyadic, so their
# sums are exact in any order and compare exactly with the reference; extreme ones (1e-300
# to 1e300, infinities, NaN, -0.0, cancellation) are for online/offline parity, bit for bit.
# Int64 values near its limits, about every other one: two of one sign wrap a partial sum
# up or down (a carry), one of the other sign may bring the window's total back into range.
NEAR_INT64_LIMITS = [2**62 + 1, -(2**62) - 1, 2**62 + 3, -(2**62) - 3, 2**63 - 1, -(2**63)]
_NEAR_INT64_LIMITS = st.sampled_from(NEAR_INT64_LIMITS)
_EXTREME = st.sampled_from(
    [1e300, -1e300, 1e-300, -1e-300, 1.0, -1.0, 0.1, 3.0, -0.0, 0.0, 2.5e-8, 7e15, -7e15]
) | st.sampled_from([float("nan"), float("inf"), float("-inf")])
AGG_COLUMNS: dict[str, tuple[str, st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "amount": (
        "Float64",
        st.integers(-40, 40).map(lambda n: n / 4),
        _EXTREME | st.floats(allow_nan=True, allow_infinity=True),
    ),
    "qty": (
        "Int64",
        st.booleans().flatmap(lambda big: _NEAR_INT64_LIMITS if big else st.integers(-5, 5)),
        st.booleans().flatmap(
            lambda big: _NEAR_INT64_LIMITS if big else st.integers(-(2**40), 2**40)
        ),
    ),
    "small": ("Int32", st.integers(-100, 100), st.integers(-(2**31), 2**31 - 1)),
    "rate": (
        "Float32",
        st.sampled_from([0.5, -1.25, 3.0, 0.0]),
        st.sampled_from([0.5, -0.0, 1e30, float("nan")]),
    ),
    "label": ("String", st.text(max_size=3), st.text(max_size=3)),
    "flag": ("Bool", st.booleans(), st.booleans()),
    "seen_at": ("UnixTimestamp", st.integers(-5, 5).map(minute), st.integers(-5, 5).map(minute)),
}
# (window, slide or None): hierarchies of slides, hours and days; windows of one slide
AGG_WINDOWS = [
    (timedelta(minutes=5), None),
    (timedelta(minutes=10), timedelta(minutes=1)),
    (timedelta(minutes=90), None),
    (timedelta(hours=2), timedelta(minutes=30)),
    (timedelta(days=1), None),
    (timedelta(days=2), timedelta(hours=6)),
]
# Event minutes: around tile boundaries (5 min, 30 min, hours, days) over three days.
_AGG_MINUTES = st.integers(0, 3 * 1440) | st.sampled_from(
    [m + d for m in (0, 5, 30, 60, 90, 1440, 1445, 2880, 2910) for d in (-1, 0, 1)]
)


@dataclass
class AggViewCase:
    """A generated aggregated view: the reference view, its aggregations and file layout."""

    ref: RefView
    entity: str
    dtypes: dict[str, str]  # column -> dtype name
    aggregations: list[tuple[str, str, timedelta, timedelta | None]]  # column, function, w, s
    timestamp_unit: str

    def definitions(self) -> list[Any]:
        from featurestore.definitions import Aggregation

        return [
            Aggregation(column=c, function=f, time_window=w, slide_interval=s)
            for c, f, w, s in self.aggregations
        ]


@st.composite
def agg_view_cases(
    draw: st.DrawFn,
    name: str,
    entity: str,
    extreme: bool = False,
    columns: list[str] | None = None,
    minutes: st.SearchStrategy[int] = _AGG_MINUTES,
) -> AggViewCase:
    """An aggregated view with messy events: nulls, NaN, duplicates and ties, late rows,
    events exactly on tile and window boundaries, int and string keys; over ``columns``
    (of ``AGG_COLUMNS``) or up to three drawn ones, events at ``minutes`` after ``BASE``."""
    from featurestore.aggregations.functions import FUNCTIONS
    from featurestore.types import dtype_by_name

    keys = ENTITY_KEYS[entity]
    if columns is None:
        columns = draw(
            st.lists(st.sampled_from(sorted(AGG_COLUMNS)), min_size=1, max_size=3, unique=True)
        )
    has_created = draw(st.booleans()) or draw(st.booleans())
    aggregations = []
    for column in columns:
        dtype = dtype_by_name(AGG_COLUMNS[column][0])
        usable = sorted(f for f, fn in FUNCTIONS.items() if dtype in fn.accepts)
        for function in draw(
            st.lists(st.sampled_from(usable), min_size=1, max_size=4, unique=True)
        ):
            window, slide = draw(st.sampled_from(AGG_WINDOWS))
            aggregations.append((column, function, window, slide))
    # one output per (column, function, window): a repeat would repeat its default name
    unique = {(c, f, w): (c, f, w, s) for c, f, w, s in aggregations}
    aggregations = list(unique.values())

    def row() -> SourceRow:
        event = draw(_maybe_null(minutes, 25))
        created = None
        if has_created and event is not None:
            offset = draw(_maybe_null(st.sampled_from([0, 0, 3, 90, 2000, -30]), 6))
            created = None if offset is None else minute(event + offset)
        values = {}
        for column in columns:
            _, moderate, wild = AGG_COLUMNS[column]
            values[column] = draw(_maybe_null(wild if extreme else moderate, 6))
        row_keys = {k: draw(_maybe_null(st.sampled_from(KEY_VALUES[k]), 25)) for k in keys}
        return SourceRow(row_keys, None if event is None else minute(event), created, values)

    files = [
        [row() for _ in range(draw(st.integers(1, 25)))] for _ in range(draw(st.integers(1, 2)))
    ]
    for _ in range(draw(st.integers(0, 3))):  # complete ties: same keys and times, other values
        original = files[0][draw(st.integers(0, len(files[0]) - 1))]
        twin = row()
        files[-1].append(
            SourceRow(dict(original.keys), original.event_ts, original.created_ts, twin.values)
        )
    ref = RefView(
        name=name, join_keys=keys, ttl=None, features=columns, files=files, has_created=has_created
    )
    return AggViewCase(
        ref=ref,
        entity=entity,
        dtypes={c: AGG_COLUMNS[c][0] for c in columns},
        aggregations=aggregations,
        timestamp_unit=draw(st.sampled_from(["us", "ns"])),
    )


def write_agg_files(case: AggViewCase, folder: Path) -> None:
    """Write an aggregated view's source files (``part-0.parquet``, ...)."""
    plain = ViewCase(case.ref, case.entity, case.dtypes, False, case.timestamp_unit, False)
    write_view_files(plain, folder)


def build_agg_repo(cases: list[AggViewCase], path: Path, online: str = "") -> Any:
    """Write aggregated views as a repo under ``path`` (``online``: an online_store line),
    apply it and return its FeatureStore."""
    from featurestore import Entity, FeatureStore, FeatureView, FileSource
    from featurestore.registry import Registry
    from featurestore.repo import RepoContents

    path.mkdir(parents=True, exist_ok=True)
    (path / "featurestore.yaml").write_text(
        "project: aggs\nregistry: data/registry.json\noffline_store: {type: duckdb}\n" + online
    )
    entities = {name: Entity(name=name, join_keys=keys) for name, keys in ENTITY_KEYS.items()}
    contents = RepoContents(entities=entities)
    for case in cases:
        write_agg_files(case, path / "data" / case.ref.name)
        contents.views[case.ref.name] = FeatureView(
            name=case.ref.name,
            entities=[entities[case.entity]],
            source=FileSource(
                path=f"data/{case.ref.name}",
                timestamp_field="event_ts",
                created_timestamp_column="created_ts" if case.ref.has_created else None,
            ),
            aggregations=case.definitions(),
        )
    Registry(path / "data" / "registry.json", "aggs").apply(contents, path)
    return FeatureStore(path)
