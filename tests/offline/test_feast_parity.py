"""Our training sets equal Feast 0.67's (DuckDB offline store) on many random cases.

Each case is a few feature views over small Parquet sources and an entity table, generated
by a seeded generator aimed at the edges of the point-in-time join: duplicate event times
with different created times, missing created times, null feature values, entity times
exactly at ``event_ts`` and exactly at ``t - ttl`` (and a microsecond either side), times
before any data, keys with no data, several views with different ttls, ``ttl=0`` (no ttl),
int, string and composite keys, views of different entities in one request, duplicate
entity rows, naive entity timestamps, extra entity columns, source rows with a null key or
a null event time, entity rows with a null (string) key. Complete ties (same keys, event
and created time) are never generated: Feast picks one of them arbitrarily.

Feast runs in its own virtual environment (``FEATURESTORE_FEAST_PYTHON``, default
``.venv-feast/bin/python``; ``make feast`` builds it) through ONE long-lived
``tests/feast_worker.py`` process fed every case of the module, working in parallel with us.
Results are compared on Arrow (``job.to_arrow()`` on both sides: values AND types), and on
pandas (``job.to_df()``) for a quarter as many other cases, after sorting Feast's rows by a
``row_id`` column we add (Feast reorders large inputs). On Arrow nothing else is normalized;
on pandas only what FEAST_NOTES documents: Feast's int64-with-nulls is float64 NaN (and a
NaN is indistinguishable from a null). Any other difference fails the test
with the case, row, view, feature, both values and the view's source rows for those keys.
``as_of="created"`` is compared with Feast's ``filter_by_created_timestamp=True`` on another
quarter, without missing created times (with them the two differ: see the test).
``FEATURESTORE_PARITY_CASES`` (default 80) sets the number of cases.

In CI (``CI=true``) a missing Feast environment fails; locally it skips with the reason.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurestore as fs
from featurestore.repo import RepoContents
from featurestore.training import RetrievalJob

pytestmark = [
    pytest.mark.feast,
    pytest.mark.filterwarnings("ignore::featurestore.errors.SkippedRowsWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "feast_worker.py"
SEED = 20240101
CASES = int(os.environ.get("FEATURESTORE_PARITY_CASES", "80"))

HOUR = 3_600_000_000  # microseconds
BASE_US = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
TTL_CHOICES = [None, 0, 3 * 3600, 6 * 3600, 24 * 3600]  # seconds; None and 0 both mean no ttl
FEATURE_DTYPES = ["Int64", "Int32", "Float64", "Float32", "String", "Bool", "UnixTimestamp"]
KEY_LAYOUTS = [
    [("user_id", "Int64")],
    [("account", "String")],
    [("user_id", "Int64"), ("account", "String")],
]
INT_KEYS = [-3, 0, 1, 2, 7, 2**40]
STR_KEYS = ["a", "b", "ab", "", "é", "1"]
ARROW = {
    "Int64": pa.int64(),
    "Int32": pa.int32(),
    "Float64": pa.float64(),
    "Float32": pa.float32(),
    "String": pa.string(),
    "Bool": pa.bool_(),
    "UnixTimestamp": pa.timestamp("us", tz="UTC"),
}


# --- Feast, in its own environment ----------------------------------------------------------


def feast_python() -> Path:
    """The Feast venv's python, or fail (CI) / skip (locally) saying how to get it."""
    path = Path(os.environ.get("FEATURESTORE_FEAST_PYTHON", ROOT / ".venv-feast/bin/python"))
    if path.is_file() and os.access(path, os.X_OK):
        return path
    reason = f"Feast's environment is missing ({path}): run `make feast` to build it"
    if os.environ.get("CI", "").lower() in {"true", "1", "yes"}:
        pytest.fail(f"CI must compare with Feast, but {reason}", pytrace=False)
    pytest.skip(reason)


class FeastWorker:
    """One ``feast_worker.py`` process; ``run(jobs)`` answers every job in order."""

    def __init__(self, python: Path, log_path: Path) -> None:
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [str(python), str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        ready = self.process.stdout.readline()  # type: ignore[union-attr]
        if not ready:
            raise RuntimeError(f"the Feast worker died on start; see {log_path}")

    def run(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send all jobs from a thread (no pipe deadlock) and read one answer per job."""

        def send() -> None:
            for job in jobs:
                self.process.stdin.write(json.dumps(job) + "\n")  # type: ignore[union-attr]
            self.process.stdin.flush()  # type: ignore[union-attr]

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answers = []
        for _ in jobs:
            line = self.process.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"the Feast worker died; see {self._log.name}")
            answers.append(json.loads(line))
        sender.join()
        return answers

    def close(self) -> None:
        self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


# --- random cases ---------------------------------------------------------------------------


@dataclass
class ViewCase:
    name: str
    keys: list[tuple[str, str]]  # (name, dtype)
    features: list[tuple[str, str]]
    ttl_seconds: int | None
    created: bool
    table: pa.Table
    path: Path


@dataclass
class Case:
    id: str
    dir: Path
    views: list[ViewCase]
    refs: list[str]
    full_feature_names: bool
    entities: pa.Table
    entity_path: Path


def _key_value(rng: random.Random, dtype: str) -> Any:
    return rng.choice(INT_KEYS) if dtype == "Int64" else rng.choice(STR_KEYS)


def _feature_value(rng: random.Random, dtype: str) -> Any:
    if rng.random() < 0.2:
        return None
    if dtype in ("Int64", "Int32"):
        return rng.randint(-(2**31), 2**31 - 1)
    if dtype in ("Float64", "Float32"):
        return rng.choice([0.0, -1.5, 0.1, 1e10, rng.uniform(-1e3, 1e3)])
    if dtype == "String":
        return rng.choice(["", "x", "hello", "ü", str(rng.randint(0, 99))])
    if dtype == "Bool":
        return rng.random() < 0.5
    return datetime.fromtimestamp(rng.randint(0, 2_000_000_000), tz=UTC)


def _source_rows(
    rng: random.Random,
    keys: list[tuple[str, str]],
    created: bool,
    key_pool: list[tuple],
    missing_created: bool,
) -> list[dict[str, Any]]:
    """Source rows with no complete tie: per (keys, event time), distinct created times
    (at most one missing, and none without ``missing_created``); without a created column,
    one row per (keys, event time)."""
    rows: list[dict[str, Any]] = []
    used: dict[tuple, set] = {}
    for _ in range(rng.randint(0, 30)):
        key = rng.choice(key_pool)
        event = BASE_US + rng.randint(0, 24) * HOUR + rng.choice([0, 0, 0, rng.randint(1, HOUR)])
        taken = used.setdefault((key, event), set())
        if created:
            missing = rng.random() < 0.15 and missing_created
            stamp = None if missing else event + rng.randint(0, 72) * HOUR // 4
            if stamp in taken:
                continue
        else:
            stamp = None
            if taken:
                continue
        taken.add(stamp)
        row = dict(zip([k for k, _ in keys], key, strict=True))
        row["event_ts"] = event
        row["created_ts"] = stamp
        if rng.random() < 0.04:  # skipped by both: a null key or a null event time
            row[rng.choice([k for k, _ in keys] + ["event_ts"])] = None
        rows.append(row)
    rng.shuffle(rows)
    return rows


def _entity_time(rng: random.Random, view_rows: list[tuple[ViewCase, list]]) -> int:
    """An edge time of a random view: at a row's event time, at ``event + ttl`` (so that
    ``t - ttl == event``), a microsecond either side of those; sometimes before any data."""
    view, rows = rng.choice(view_rows)
    ttl_us = (view.ttl_seconds or 0) * 1_000_000
    events = [r["event_ts"] for r in rows if r["event_ts"] is not None]
    if not events or rng.random() < 0.15:
        return rng.choice([BASE_US - 24 * HOUR, BASE_US + rng.randint(-2 * HOUR, 30 * HOUR)])
    event = rng.choice(events)
    return rng.choice(
        [event, event - 1, event + 1, event + ttl_us, event + ttl_us + 1, event + ttl_us - 1]
    )


def _make_view(
    rng: random.Random,
    v: int,
    keys: list[tuple[str, str]],
    key_pool: list[tuple],
    full_names: bool,
    folder: Path,
    missing_created: bool,
) -> tuple[ViewCase, list[dict[str, Any]]]:
    """View ``v{v}``: its source written as Parquet, and its rows as dicts."""
    created = rng.random() < 0.75
    features = [
        (f"f{i}" if full_names else f"v{v}_f{i}", rng.choice(FEATURE_DTYPES))
        for i in range(rng.randint(1, 3))
    ]
    rows = _source_rows(rng, keys, created, key_pool, missing_created)
    stamp = pa.timestamp("us", tz="UTC")
    columns = {name: pa.array([r[name] for r in rows], ARROW[dtype]) for name, dtype in keys}
    columns["event_ts"] = pa.array([r["event_ts"] for r in rows], pa.int64()).cast(stamp)
    if created:
        columns["created_ts"] = pa.array([r["created_ts"] for r in rows], pa.int64()).cast(stamp)
    for name, dtype in features:
        values = [_feature_value(rng, dtype) for _ in rows]
        for r, value in zip(rows, values, strict=True):
            r[name] = value
        columns[name] = pa.array(values, ARROW[dtype])
    table = pa.table(columns)
    path = folder / f"v{v}.parquet"
    pq.write_table(table, path)
    ttl = rng.choice(TTL_CHOICES)
    return ViewCase(f"v{v}", keys, features, ttl, created, table, path), rows


def _make_entities(
    rng: random.Random,
    layout: list[tuple[str, str]],
    universe: list[tuple],
    rows_by_view: list[tuple[ViewCase, list]],
) -> pa.Table:
    """Entity rows: mostly keys with data, at edge times; some duplicates; shuffled columns."""
    entity_rows = []
    for _ in range(rng.randint(1, 25)):
        view, rows = rng.choice(rows_by_view)
        if rows and rng.random() < 0.7:
            source_key = tuple(rng.choice(rows)[k] for k, _ in view.keys)
            key = next((u for u in universe if u[: len(source_key)] == source_key), universe[0])
        else:
            key = rng.choice(universe)
        entity_rows.append((key, _entity_time(rng, rows_by_view)))
    if layout[0][1] == "String" and rng.random() < 0.2:
        # A null key matches nothing. (Not for int keys: pandas turns Feast's int64 key
        # column with a null into float64, a difference in the output's key column.)
        entity_rows.append(((None, *universe[0][1:]), _entity_time(rng, rows_by_view)))
    for _ in range(rng.choice([0, 0, 1, 3])):  # exact duplicates of earlier rows
        entity_rows.append(rng.choice(entity_rows))
    rng.shuffle(entity_rows)

    timestamp_type = pa.timestamp("us") if rng.random() < 0.2 else pa.timestamp("us", tz="UTC")
    columns = {
        name: pa.array([k[i] for k, _ in entity_rows], ARROW[dtype])
        for i, (name, dtype) in enumerate(layout)
    }
    columns["event_timestamp"] = pa.array([t for _, t in entity_rows], pa.int64()).cast(
        timestamp_type
    )
    columns["row_id"] = pa.array(range(len(entity_rows)), pa.int64())
    if rng.random() < 0.5:
        columns["label"] = pa.array([rng.choice([0.0, 1.0, None]) for _ in entity_rows])
    order = list(columns)
    rng.shuffle(order)
    return pa.table({name: columns[name] for name in order})


def make_case(index: int, root: Path, *, missing_created: bool = True) -> Case:
    """The ``index``-th case of the seeded sequence, written as Parquet under ``root``.

    One to three views; with a composite key, a later view may be keyed by the first key
    only (views of different entities in one request). A third of the keys have no data.
    ``missing_created=False``: every row of a source with a created column has one.
    """
    rng = random.Random(SEED * 1000 + index)
    folder = root / f"case{index}"
    folder.mkdir(parents=True)
    layout = rng.choice(KEY_LAYOUTS)
    universe = list(dict.fromkeys(tuple(_key_value(rng, d) for _, d in layout) for _ in range(8)))
    with_data = universe[: max(1, len(universe) * 2 // 3)]
    full_names = rng.random() < 0.3
    rows_by_view = []
    for v in range(rng.randint(1, 3)):
        keys = layout if (v == 0 or len(layout) == 1 or rng.random() < 0.5) else layout[:1]
        pool = list(dict.fromkeys(k[: len(keys)] for k in with_data))
        rows_by_view.append(_make_view(rng, v, keys, pool, full_names, folder, missing_created))
    views = [view for view, _ in rows_by_view]
    entities = _make_entities(rng, layout, universe, rows_by_view)
    entity_path = folder / "entities.parquet"
    pq.write_table(entities, entity_path)
    refs = [f"{v.name}:{f}" for v in views for f, _ in rng.sample(v.features, len(v.features))]
    refs = refs[: max(1, rng.randint(len(refs) // 2, len(refs)))]
    return Case(f"case{index}", folder, views, refs, full_names, entities, entity_path)


def feast_job(case: Case) -> dict[str, Any]:
    """The worker's job for a case: same files, same definitions, Feast's DuckDB store."""
    return {
        "id": case.id,
        "workdir": str(case.dir / "feast"),
        "offline_store": "duckdb",
        "entity_df": str(case.entity_path),
        "views": [
            {
                "name": v.name,
                "source": str(v.path),
                "timestamp_field": "event_ts",
                "created_timestamp_column": "created_ts" if v.created else None,
                "keys": [{"name": k, "dtype": d} for k, d in v.keys],
                "features": [{"name": f, "dtype": d} for f, d in v.features],
                "ttl_seconds": v.ttl_seconds,
            }
            for v in case.views
        ],
        "features": case.refs,
        "full_feature_names": case.full_feature_names,
        "output": "arrow",
        "out": str(case.dir / "feast.parquet"),
    }


def ours(case: Case, as_of: str = "event") -> RetrievalJob:
    """Our training set for a case (as_of="event"), from a repo applied in the case folder."""
    repo = case.dir / "ours"
    repo.mkdir()
    (repo / "featurestore.yaml").write_text(
        "project: parity\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
    )
    entities: dict[str, fs.Entity] = {}
    contents = RepoContents()
    for v in case.views:
        for name, _ in v.keys:
            entities.setdefault(name, fs.Entity(name=name, join_keys=[name]))
        contents.views[v.name] = fs.FeatureView(
            name=v.name,
            entities=[entities[k] for k, _ in v.keys],
            schema=[fs.Field(name=n, dtype=getattr(fs, d)) for n, d in v.keys + v.features],
            source=fs.FileSource(
                path=str(v.path),
                timestamp_field="event_ts",
                created_timestamp_column="created_ts" if v.created else None,
            ),
            ttl=None if v.ttl_seconds is None else timedelta(seconds=v.ttl_seconds),
        )
    contents.entities.update(entities)
    store = fs.FeatureStore(repo)
    store.registry.apply(contents, store.repo_path)
    job = store.get_historical_features(
        entity_df=case.entities,
        features=case.refs,
        full_feature_names=case.full_feature_names,
        as_of=as_of,
    )
    return job


# --- comparison -----------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _normalize(theirs: pa.ChunkedArray, ours: pa.ChunkedArray, pandas: bool) -> pa.ChunkedArray:
    """Feast's column in our type, undoing only the differences FEAST_NOTES documents.

    Only with ``pandas`` (both sides went through ``.to_df()``): Feast's int64-with-nulls
    comes back as float64 NaN, Feast's pandas timestamps may be nanoseconds, and pandas'
    own conversions (an all-None column has no type, pandas 3 strings are large_string).
    On Arrow nothing is normalized: even naive entity times come back from Feast as UTC.
    """
    if pandas and pa.types.is_null(theirs.type):  # an all-None object column, typeless
        theirs = theirs.cast(ours.type)
    if pandas and pa.types.is_large_string(ours.type) and pa.types.is_string(theirs.type):
        theirs = theirs.cast(ours.type)  # pandas 3's str dtype converts to large_string
    if pandas and pa.types.is_timestamp(theirs.type) and theirs.type.unit == "ns":
        theirs = theirs.cast(ours.type)
    if pandas and pa.types.is_float64(theirs.type) and pa.types.is_integer(ours.type):
        values = [None if _missing(v) else v for v in theirs.to_pylist()]
        if all(v is None or v == int(v) for v in values):
            theirs = pa.chunked_array([pa.array(values, pa.float64()).cast(ours.type)])
    return theirs


def _view_of(case: Case, column: str) -> ViewCase | None:
    for view in case.views:
        name = column.removeprefix(f"{view.name}__") if case.full_feature_names else column
        if name in dict(view.features) and (not case.full_feature_names or name != column):
            return view
    return None


def compare(case: Case, feast: pa.Table, mine: pa.Table, *, pandas: bool = False) -> list[str]:
    """Every difference between Feast's result and ours, one readable line each.

    ``pandas``: both tables came from ``.to_df()``, where a float NaN and a null are one
    value (pandas cannot tell them apart on Feast's side).
    """
    problems: list[str] = []
    where = f"{case.id} (seed {SEED}, {'to_df' if pandas else 'to_arrow'}, dir {case.dir})"
    n = case.entities.num_rows
    if feast.num_rows != n or mine.num_rows != n:
        return [f"{where}: {n} entity rows, Feast returned {feast.num_rows}, ours {mine.num_rows}"]
    if mine.column("row_id").to_pylist() != list(range(n)):
        problems.append(f"{where}: ours did not keep the entity rows in the caller's order")
    if feast.column_names != mine.column_names:
        problems.append(
            f"{where}: columns differ: Feast {feast.column_names}, ours {mine.column_names}"
        )
    feast = feast.sort_by("row_id")
    entity_rows = case.entities.sort_by("row_id").to_pylist()
    for name in [c for c in mine.column_names if c in feast.column_names]:
        ours_ = mine.column(name)
        theirs = _normalize(feast.column(name), ours_, pandas)
        if theirs.type != ours_.type:
            problems.append(
                f"{where}: column {name!r}: Feast type {theirs.type}, ours {ours_.type}"
            )
            continue
        for i, (a, b) in enumerate(zip(theirs.to_pylist(), ours_.to_pylist(), strict=True)):
            if (a == b and type(a) is type(b)) or (
                _missing(a) and _missing(b) and (pandas or type(a) is type(b))
            ):
                continue
            view = _view_of(case, name)
            detail = ""
            if view is not None:
                rows = [
                    r
                    for r in view.table.to_pylist()
                    if all(r[k] == entity_rows[i][k] for k, _ in view.keys)
                ]
                detail = (
                    f"; view {view.name} ttl={view.ttl_seconds}s created={view.created}; "
                    f"its rows for these keys: {rows}"
                )
            problems.append(
                f"{where}: row {i} {entity_rows[i]} column {name!r}: "
                f"Feast {a!r}, ours {b!r}{detail}"
            )
    return problems


# --- the tests ------------------------------------------------------------------------------


def run_both(
    worker: FeastWorker, cases: list[Case], output: str, as_of: str = "event"
) -> list[str]:
    """Feast works through the batch in its process while we compute ours; the differences.

    ``as_of="created"`` is compared with Feast's ``filter_by_created_timestamp=True``.
    """
    answers: list[dict[str, Any]] = []
    created = as_of == "created"
    jobs = [
        feast_job(c) | {"output": output, "filter_by_created_timestamp": created} for c in cases
    ]
    feast_thread = threading.Thread(target=lambda: answers.extend(worker.run(jobs)))
    feast_thread.start()
    try:
        if output == "arrow":
            mine = [ours(c, as_of).to_arrow() for c in cases]
        else:
            mine = [
                pa.Table.from_pandas(ours(c, as_of).to_df(), preserve_index=False) for c in cases
            ]
    finally:
        feast_thread.join()
    problems: list[str] = []
    for case, reply, table in zip(cases, answers, mine, strict=True):
        if not reply["ok"]:
            problems.append(f"{case.id}: Feast failed: {reply['error']}")
        else:
            feast = pq.read_table(case.dir / "feast.parquet")
            problems += compare(case, feast, table, pandas=output == "df")
    return problems


@pytest.fixture(scope="module")
def feast_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeastWorker]:
    """One Feast process per test process (importing Feast takes ~4 s), shared by the parts."""
    worker = FeastWorker(feast_python(), tmp_path_factory.mktemp("feast") / "worker.log")
    try:
        yield worker
    finally:
        worker.close()


HALF, QUARTER = CASES // 2, CASES // 4
PARTS = {
    # name: (case seeds, output compared, as_of, every created time present)
    "to_arrow, first half": (range(0, HALF), "arrow", "event", False),
    "to_arrow, second half": (range(HALF, CASES), "arrow", "event", False),
    "to_df": (range(CASES, CASES + QUARTER), "df", "event", False),
    'as_of="created" vs filter_by_created_timestamp=True': (
        range(CASES + QUARTER, CASES + 2 * QUARTER),
        "arrow",
        "created",
        True,
    ),
}


@pytest.mark.parametrize("part", list(PARTS))
def test_random_cases_match_feast(tmp_path: Path, feast_worker: FeastWorker, part: str) -> None:
    """Same rows, values and Arrow types as Feast's ``to_arrow()``, case after case; and
    ``to_df()`` agrees on other cases, up to Feast's int64-with-nulls as float64 (FEAST_NOTES);
    and ``as_of="created"`` equals Feast's ``filter_by_created_timestamp=True`` on cases where
    every created time is present (Feast never shows a row whose created time is missing,
    since ``NULL <= t`` is not true; ours treats it as known from the start).

    Split in parts so that xdist runs them in parallel; each process starts Feast once.
    """
    seeds, output, as_of, all_created = PARTS[part]
    cases = [
        make_case(i, tmp_path, **({"missing_created": False} if all_created else {})) for i in seeds
    ]
    problems = run_both(feast_worker, cases, output, as_of=as_of)
    summary = "\n".join(problems[:30])
    assert not problems, f"{len(problems)} differences from Feast ({part}):\n{summary}"


def test_compare_reports_a_changed_value(tmp_path: Path) -> None:
    """The comparison is not vacuous: one changed value is one difference, located."""
    case = make_case(3, tmp_path)
    mine = ours(case).to_arrow()
    name = mine.column_names[-1]
    dtype = mine.schema.field(name).type
    values = mine.column(name).to_pylist()
    values[0] = None if values[0] is not None else pa.scalar(0).cast(dtype).as_py()
    changed = mine.set_column(mine.num_columns - 1, name, pa.array(values, dtype))
    assert compare(case, mine, mine) == []
    problems = compare(case, changed, mine)
    assert len(problems) == 1 and "row 0 " in problems[0] and repr(name) in problems[0]
