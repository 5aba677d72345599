"""The parity theorem with request-time transformations and pushes, on random messy data.

For random sources (tests/strategies.py), one or two pushes into a push-sourced view (rows
with ties against the files and each other, missing created times, nulls; pushed before or
after materialization), a request-time view over one of its numeric features and a request
field (``mode="pandas"`` or ``"python"``), and random request values (nulls included): once
everything with ``event_ts <= T`` is materialized and pushed, ``get_online_features(now=T)``
equals ``get_historical_features`` at ``T`` for every key, feature and transformed feature,
Arrow type and bits included, and both equal the brute-force reference (tests/reference.py:
pushes are files read after the source's, transformations are row functions whose outputs
are cast by the one rule). Every online store (SQLite, Redis, Redis Cluster).
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.types import dtype_by_name
from tests.reference import RefOnDemand, SourceRow, latest, point_in_time, push
from tests.strategies import (
    ENTITY_KEYS,
    ViewCase,
    minute,
    repo_source,
    source_rows,
    view_cases,
    write_view_files,
)
from tests.test_parity_online_offline import (  # the stores' fixture too
    _bits,
    expected_status,
    flush,
    online_config,
)

SETTINGS = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
pytestmark = pytest.mark.filterwarnings("ignore::featurestore.errors.SkippedRowsWarning")
__all__ = ["online_config"]  # the parity test's fixture: SQLite, Redis, Redis Cluster
NUMERIC = ("Int32", "Int64", "Float32", "Float64")
OUTPUTS = {"s": "Float64", "p": "Float32", "gt": "Bool"}
X_VALUES = st.sampled_from([0.5, -2.0, 3.25, 0.0, 1e10, None])

PANDAS = """
req = RequestSource(name="req", schema=[Field(name="x", dtype=Float64)])


@on_demand_feature_view(
    sources=[v0[[{feature!r}]], req],
    schema=[Field(name="s", dtype=Float64), Field(name="p", dtype=Float32), Field(name="gt", dtype=Bool)],
)
def od(inputs: pd.DataFrame) -> pd.DataFrame:
    f = inputs[{feature!r}].astype("Float64")
    out = pd.DataFrame(index=inputs.index)
    out["s"] = f + inputs["x"]
    out["p"] = f * inputs["x"]
    # the same input under its full name, view__feature (f * 0 is 0: the features are finite)
    out["gt"] = f > inputs["v0__{bare}"].astype("Float64") * 0 + inputs["x"]
    return out
"""
PYTHON = """
req = RequestSource(name="req", schema=[Field(name="x", dtype=Float64)])


@on_demand_feature_view(
    sources=[v0[[{feature!r}]], req],
    schema=[Field(name="s", dtype=Float64), Field(name="p", dtype=Float32), Field(name="gt", dtype=Bool)],
    mode="python",
)
def od(inputs: dict) -> dict:
    out = {{"s": [], "p": [], "gt": []}}
    for f, x in zip(inputs[{feature!r}], inputs["x"]):
        if f is None or x is None:
            values = (None, None, None)
        else:
            values = (float(f) + x, float(f) * x, float(f) > x)
        for name, value in zip(("s", "p", "gt"), values):
            out[name].append(value)
    return out
"""


def row_function(feature: str) -> Any:
    """The reference's plain-Python twin of both functions above, one row at a time."""

    def outputs(row: dict[str, Any]) -> dict[str, Any]:
        f, x = row[feature], row["x"]
        if f is None or x is None:
            return {"s": None, "p": None, "gt": None}
        return {"s": float(f) + x, "p": float(f) * x, "gt": float(f) > x}

    return outputs


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    entities = draw(st.lists(st.sampled_from(sorted(ENTITY_KEYS)), min_size=1, max_size=2))
    views = [draw(view_cases(f"v{i}", entity)) for i, entity in enumerate(entities)]
    numeric = [f for f, d in views[0].dtypes.items() if d in NUMERIC]
    assume(numeric)
    t = minute(draw(st.integers(-1, 14)))
    v0 = views[0]
    kinds = {f: f.removeprefix("v0_") for f in v0.ref.features}
    pushes = []
    for _ in range(draw(st.integers(1, 2))):
        rows = draw(st.lists(source_rows(v0.ref.join_keys, kinds, v0.ref.has_created), max_size=6))
        keep = [
            r
            for r in rows
            if r.event_ts is not None and r.event_ts <= t and None not in r.keys.values()
        ]
        pushes.append(keep)
    return {
        "views": views,
        "feature": numeric[0],
        "mode": draw(st.sampled_from(["pandas", "python"])),
        "t": t,
        "pushes": pushes,
        "push_first": draw(st.booleans()),
        "x": draw(st.lists(X_VALUES, min_size=20, max_size=20)),
    }


def write_repo(path: Path, case: dict[str, Any], online_config: str) -> FeatureStore:
    views: list[ViewCase] = case["views"]
    for view in views:
        write_view_files(view, path / "data" / view.ref.name)
    feature = case["feature"]
    function = (PANDAS if case["mode"] == "pandas" else PYTHON).format(
        feature=feature, bare=feature
    )
    (path / "definitions.py").write_text(repo_source(views, push={"v0"}) + function)
    (path / "featurestore.yaml").write_text(
        "project: props\nregistry: data/registry.json\noffline_store: {type: duckdb}\n"
        + online_config
    )
    flush(online_config)
    store = FeatureStore(path)
    store.apply()
    return store


def push_table(case: ViewCase, rows: list[SourceRow]) -> pa.Table:
    """The rows as a push: keys and features typed, times UTC; the created column (when the
    source has one) holds nulls where a row has no created time (the push time fills them)."""
    utc = pa.timestamp("us", tz="UTC")
    columns: dict[str, pa.Array] = {}
    for key in case.ref.join_keys:
        columns[key] = pa.array(
            [r.keys[key] for r in rows], pa.int64() if key == "user_id" else pa.string()
        )
    columns["event_ts"] = pa.array([r.event_ts for r in rows], utc)
    if case.ref.has_created:
        columns["created_ts"] = pa.array([r.created_ts for r in rows], utc)
    for name, dtype in case.dtypes.items():
        columns[name] = pa.array([r.values[name] for r in rows], dtype_by_name(dtype).to_arrow())
    return pa.table(columns)


def entity_keys(case: ViewCase) -> list[dict[str, Any]]:
    keys = case.ref.join_keys
    seen: dict[tuple[Any, ...], None] = {}
    for rows in case.ref.all_files:
        for row in rows:
            if all(row.keys[k] is not None for k in keys):
                seen[tuple(row.keys[k] for k in keys)] = None
    absent = tuple(99 if k == "user_id" else "absent" for k in keys)
    return [dict(zip(keys, key, strict=True)) for key in [*seen, absent]]


def check(store: FeatureStore, case: dict[str, Any], t: datetime) -> None:
    """Views' features and the transformed features: online == offline == reference."""
    views: list[ViewCase] = case["views"]
    for view in views:
        rows = entity_keys(view)
        refs = [f"{view.ref.name}:{f}" for f in view.ref.features]
        online = store.get_online_features(features=refs, entity_rows=rows, now=t)
        offline = store.get_historical_features(entity_table(view, rows, t), refs).to_arrow()
        winners = latest(view.ref, end=t)
        for feature, dtype in view.dtypes.items():
            on, off = online.to_arrow()[feature], offline[feature]
            assert on.type == off.type == dtype_by_name(dtype).to_arrow(), feature
            for i, row in enumerate(rows):
                assert _bits(on[i].as_py(), dtype) == _bits(off[i].as_py(), dtype), (feature, row)
                key = tuple(row[k] for k in view.ref.join_keys)
                status = expected_status(view, winners.get(key), feature, t)
                assert online.statuses[feature][i] == status, (feature, row)

    v0 = views[0]
    rows = entity_keys(v0)
    rows = [{**row, "x": case["x"][i % len(case["x"])]} for i, row in enumerate(rows)]
    refs = [f"od:{name}" for name in OUTPUTS]
    online = store.get_online_features(features=refs, entity_rows=rows, now=t)
    offline = store.get_historical_features(entity_table(v0, rows, t, x=True), refs).to_arrow()
    reference = point_in_time(
        [{**row, "event_timestamp": t} for row in rows],
        [],
        on_demand=[
            RefOnDemand(
                "od",
                [("v0", case["feature"])],
                ["x"],
                row_function(case["feature"]),
                OUTPUTS,
                nan_is_null=case["mode"] == "pandas",
            )
        ],
        all_views=[v0.ref],
    )
    answer = online.to_arrow()
    for name, dtype in OUTPUTS.items():
        assert answer[name].type == offline[name].type == dtype_by_name(dtype).to_arrow()
        for i, row in enumerate(rows):
            expected = _bits(reference[i][name], dtype)
            got = (_bits(answer[name][i].as_py(), dtype), _bits(offline[name][i].as_py(), dtype))
            assert got == (expected, expected), (name, row, reference[i])
            status = "NULL_VALUE" if reference[i][name] is None else "PRESENT"
            assert online.statuses[name][i] == status, (name, row)
            assert online.event_timestamps[name][i] is None


def entity_table(
    view: ViewCase, rows: list[dict[str, Any]], t: datetime, x: bool = False
) -> pa.Table:
    columns = {
        k: pa.array([r[k] for r in rows], pa.int64() if k == "user_id" else pa.string())
        for k in view.ref.join_keys
    }
    columns["event_timestamp"] = pa.array([t] * len(rows), pa.timestamp("us", tz="UTC"))
    if x:
        columns["x"] = pa.array([r["x"] for r in rows], pa.float64())
    return pa.table(columns)


@SETTINGS
@given(case=scenarios())
def test_transformed_and_pushed_features_online_equal_offline_equal_reference(
    online_config: str, case: dict[str, Any]
) -> None:
    t = case["t"]
    with tempfile.TemporaryDirectory() as tmp:
        store = write_repo(Path(tmp), case, online_config)
        v0: ViewCase = case["views"][0]
        if not case["push_first"]:
            store.materialize(minute(-10_000), t)
        for i, rows in enumerate(case["pushes"]):
            pushed_at = minute(100 + i)
            store.push("v0_push", push_table(v0, rows), to="online_and_offline", now=pushed_at)
            push(v0.ref, rows, pushed_at)
        if case["push_first"]:
            store.materialize(minute(-10_000), t)
        check(store, case, t)
        store.close()


def test_the_functions_and_the_reference_agree_on_a_worked_example() -> None:
    """The reference's row function is the test functions' twin (a hand-checked row)."""
    out = RefOnDemand("od", [("v0", "f")], ["x"], row_function("f"), OUTPUTS).outputs(
        {("v0", "f"): 3}, {"x": 0.1}
    )
    assert out == {"s": 3.1, "p": 0.30000001192092896, "gt": True}
