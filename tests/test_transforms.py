"""Request-time transformations: one function on both paths, checked at apply, fingerprinted
by their normalized code, refused when the repo's function is not the applied one, and errors
that name the view, the field or the column. (Parity on random data:
tests/test_parity_transforms_push.py; over HTTP: tests/serving/test_transforms_push.py.)"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore import (
    DefinitionError,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    RegistryError,
    RequestSource,
    RetrievalError,
    TransformationError,
    on_demand_feature_view,
)
from featurestore.types import Float64, Int64
from tests.transform_repo import ODFV, SERVICE, T0, write_definitions, write_repo

HOUR = timedelta(hours=1)
ENTITIES = pd.DataFrame(
    {
        "user_id": [1, 2, 3, 4, 1],
        "event_timestamp": [T0 + HOUR] * 5,
        "amount": [5.0, 1.0, 2.0, 3.0, None],
    }
)
ROWS = [{"user_id": 1, "amount": 5.0}, {"user_id": 2, "amount": 1.0}]


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = write_repo(tmp_path)
    store.apply()
    store.materialize(T0 - timedelta(days=10), T0 + HOUR)
    yield store
    store.close()


def test_one_function_object_computes_both_paths_with_the_same_values(store) -> None:  # type: ignore[no-untyped-def]
    refs = ["stats:cnt", "scored:ratio", "scored:r32"]
    job = store.get_historical_features(ENTITIES, refs)
    offline = job.to_arrow()
    rows = [
        {"user_id": int(u), "amount": None if pd.isna(a) else float(a)}
        for u, a in zip(ENTITIES["user_id"], ENTITIES["amount"], strict=True)
    ]
    online = store.get_online_features(refs, rows, now=T0 + HOUR)
    assert (
        online.to_arrow()
        .select(["cnt", "ratio", "r32"])
        .equals(offline.select(["cnt", "ratio", "r32"]))
    )
    # user 1: avg 20 at T0+1h; user 2: avg 0.1; user 3 outside the ttl; user 4 unknown;
    # the last row has no amount. Float32 rounds avg * 3.
    assert offline["ratio"].to_pylist() == [0.25, 10.0, None, None, None]
    assert offline["r32"].to_pylist() == [60.0, float(np.float32(0.1 * 3)), None, None, 60.0]
    assert online.statuses["ratio"] == [
        "PRESENT",
        "PRESENT",
        "NULL_VALUE",
        "NULL_VALUE",
        "NULL_VALUE",
    ]
    assert online.event_timestamps["ratio"] == [None] * 5
    assert offline.column_names == [*ENTITIES.columns, "cnt", "ratio", "r32"]  # inputs dropped
    reader_plan = store._online_reader().plan(refs, False)[0]
    assert reader_plan.transformations[0].function is job.plan.transformations[0].function


def test_full_feature_names_and_a_service_name_outputs_view__feature(store) -> None:  # type: ignore[no-untyped-def]
    job = store.get_historical_features(ENTITIES, feature_service="svc", full_feature_names=True)
    assert job.to_arrow().column_names[-3:] == ["stats__cnt", "scored__ratio", "scored__r32"]
    assert [f.ref for f in job.manifest.features] == ["stats:cnt", "scored:ratio", "scored:r32"]
    online = store.get_online_features(
        feature_service="svc", entity_rows=ROWS, full_feature_names=True, now=T0 + HOUR
    )
    assert online.to_dict()["scored__ratio"] == [0.25, 10.0]


def test_with_timestamps_gives_the_input_views_winners(store) -> None:  # type: ignore[no-untyped-def]
    table = store.get_historical_features(ENTITIES, ["scored:ratio"], with_timestamps=True)
    columns = table.to_arrow().column_names
    assert columns[-3:] == ["stats__event_ts", "stats__created_ts", "ratio"]


def test_request_fields_missing_or_of_the_wrong_type_name_the_field_and_view(store) -> None:  # type: ignore[no-untyped-def]
    refs = ["scored:ratio"]
    with pytest.raises(RetrievalError, match=r"'scored' needs request field 'amount'"):
        store.get_historical_features(ENTITIES.drop(columns="amount"), refs)
    with pytest.raises(RetrievalError, match=r"request field 'amount' is Float64 but entity_df"):
        store.get_historical_features(ENTITIES.assign(amount="x"), refs)
    with pytest.raises(RetrievalError, match=r"no request field 'amount'.*'scored'"):
        store.get_online_features(refs, [{"user_id": 1}])
    with pytest.raises(
        RetrievalError, match=r"request field 'amount' of on-demand feature view 'scored'"
    ):
        store.get_online_features(refs, {"user_id": [1], "amount": ["5"]})
    with pytest.raises(
        RetrievalError,
        match=r"'amount' of on-demand feature view 'scored' is Float64, and row 1 holds "
        r"1152921504606846977, which does not fit",
    ):
        store.get_online_features(refs, {"user_id": [1, 2], "amount": [1, 2**60 + 1]})


NARROW_AMOUNT = (
    """
txn = RequestSource(name="txn", schema=[Field(name="amount", dtype=Float32)])
"""
    + ODFV
)


def test_a_float32_request_field_beyond_its_range_is_refused_alike_on_both_paths(
    tmp_path: Path,
) -> None:
    """Defect: a Float32 request field of 1e39 became Infinity (and so did the feature it
    fed); now both paths refuse it, naming the field, the view, the row and the value."""
    store = write_repo(tmp_path, NARROW_AMOUNT)
    store.apply()
    store.materialize(T0 - timedelta(days=10), T0 + HOUR)
    message = (
        r"request field 'amount' of on-demand feature view 'scored' is Float32, and row 1 "
        r"holds 1e\+39, beyond Float32's range"
    )
    with pytest.raises(RetrievalError, match=message):
        store.get_online_features(["scored:ratio"], {"user_id": [1, 2], "amount": [1.0, 1e39]})
    with pytest.raises(RetrievalError, match=message):
        store.get_historical_features(
            ENTITIES.iloc[:2].assign(amount=[1.0, 1e39]), ["scored:ratio"]
        ).to_arrow()
    store.close()


def test_an_exception_in_the_function_names_the_view_on_both_paths(tmp_path: Path) -> None:
    odfv = ODFV.replace(
        'out["ratio"] = inputs["amount"] / inputs["avg"]',
        'if (inputs["amount"] == 13).any():\n        raise ValueError("unlucky")\n'
        '    out["ratio"] = inputs["amount"] / inputs["avg"]',
    )
    store = write_repo(tmp_path, odfv)
    store.apply()
    store.materialize(T0 - timedelta(days=10), T0 + HOUR)
    message = r"on-demand feature view 'scored': its function raised ValueError: unlucky"
    with pytest.raises(TransformationError, match=message) as raised:
        store.get_online_features(["scored:ratio"], [{"user_id": 1, "amount": 13.0}])
    assert raised.value.view == "scored"
    with pytest.raises(TransformationError, match=message):
        store.get_historical_features(ENTITIES.assign(amount=13.0), ["scored:ratio"]).to_arrow()
    store.close()


# --- checked at apply, on a sample of the sources ----------------------------------------

BAD_FUNCTIONS = {
    "not row-local": (
        'out["ratio"] = inputs["avg"] / inputs["avg"].mean()',
        r"'scored' is not row-local: its output 'ratio' for sample row 0",
    ),
    "ranks": ('out["ratio"] = inputs["avg"].rank()', r"'scored' is not row-local"),
    "missing column": (
        'out["ratiox"] = inputs["avg"]',
        r"'scored': its function returned no column 'ratio'",
    ),
    "strings for a Float64": (
        'out["ratio"] = inputs["avg"].astype(str)',
        r"'scored': output column 'ratio' is Float64 but holds (large_)?string values",
    ),
    "a repeated column": (
        'out["ratio"] = inputs["avg"]\n    out = pd.concat([out, out[["ratio"]]], axis=1)',
        r"'scored': its function returned the column 'ratio' 2 times",
    ),
    "raises": ('out["ratio"] = inputs["nope"]', r"'scored': its function raised KeyError: 'nope'"),
    "a string UTF-8 cannot encode": (
        'out["ratio"] = pd.Series(["\\ud800"] * len(out), out.index, dtype=object)',
        r"'scored': output column 'ratio' cannot be read as Float64: .*surrogates",
    ),
    "rows dropped": (
        'out = out.head(1)\n    out["ratio"] = inputs["avg"].head(1)',
        r"'scored': output column 'ratio' has 1 rows for 8 input rows",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FUNCTIONS))
def test_apply_refuses_a_function_that_fails_on_a_sample_naming_the_view(
    tmp_path: Path, case: str
) -> None:
    line, message = BAD_FUNCTIONS[case]
    store = write_repo(
        tmp_path, ODFV.replace('out["ratio"] = inputs["amount"] / inputs["avg"]', line)
    )
    with pytest.raises(DefinitionError, match=message):
        store.apply()
    assert not (tmp_path / "data" / "registry.json").exists()


def test_a_non_integral_float_into_an_integer_output_is_refused_naming_the_column(
    tmp_path: Path,
) -> None:
    odfv = ODFV.replace('Field(name="r32", dtype=Float32)', 'Field(name="r32", dtype=Int64)')
    with pytest.raises(DefinitionError, match=r"output column 'r32' is Int64.*0\.3.*truncated"):
        write_repo(tmp_path, odfv).apply()


# --- fingerprints: the normalized code and the projections read ---------------------------


def _fingerprint(path: Path, odfv: str = ODFV, service: str = SERVICE) -> str:
    write_definitions(path, odfv, service)
    from featurestore import FeatureStore

    return FeatureStore(path).plan().new_state.on_demand["scored"].fingerprint


def test_the_fingerprint_covers_the_code_not_its_comments_formatting_or_docstring(
    tmp_path: Path,
) -> None:
    write_repo(tmp_path)
    base = _fingerprint(tmp_path)
    cosmetic = ODFV.replace(
        "    out = pd.DataFrame(index=inputs.index)",
        '    """Scores the transaction."""\n    # a comment\n    out = pd.DataFrame(  index = inputs.index )',
    )
    assert _fingerprint(tmp_path, cosmetic) == base
    changed = ODFV.replace('inputs["stats__avg"] * 3', 'inputs["stats__avg"] * 4')
    assert _fingerprint(tmp_path, changed) != base


def test_the_fingerprint_covers_the_repo_functions_and_constants_it_uses(tmp_path: Path) -> None:
    write_repo(tmp_path)
    helper = ODFV.replace('inputs["stats__avg"] * 3', "triple(inputs['stats__avg'])") + (
        "\n\nFACTOR = 3\n\ndef triple(x):\n    return x * FACTOR\n"
    )
    base = _fingerprint(tmp_path, helper)
    assert _fingerprint(tmp_path, helper.replace("FACTOR = 3", "FACTOR = 3.0")) != base
    assert _fingerprint(tmp_path, helper.replace("return x * FACTOR", "return FACTOR * x")) != base
    assert (
        _fingerprint(tmp_path, helper.replace("def triple(x):", "# helper\ndef triple(x):")) == base
    )


def test_the_fingerprint_covers_what_it_reads_of_its_source_views_only(tmp_path: Path) -> None:
    write_repo(tmp_path)
    base = _fingerprint(tmp_path)
    from featurestore import FeatureStore

    definitions = tmp_path / "definitions.py"
    text = definitions.read_text()
    definitions.write_text(text.replace('Field(name="tag", dtype=String)', ""))  # not read
    assert FeatureStore(tmp_path).plan().new_state.on_demand["scored"].fingerprint == base
    definitions.write_text(text.replace("ttl=timedelta(days=1)", "ttl=timedelta(days=2)"))
    assert FeatureStore(tmp_path).plan().new_state.on_demand["scored"].fingerprint != base


# --- the repo's function must be the applied one ------------------------------------------


def test_an_unapplied_edit_is_refused_until_apply_and_then_the_old_model_is(
    tmp_path: Path,
) -> None:
    from featurestore import FeatureStore, models

    store = write_repo(tmp_path)
    store.apply()
    labels = pd.DataFrame(
        {
            "user_id": [1, 2, 1, 2] * 10,
            "event_timestamp": [T0 + HOUR + timedelta(minutes=i) for i in range(40)],
            "amount": [float(i % 7) for i in range(40)],
            "label": [i % 2 for i in range(40)],
        }
    )
    models.train(tmp_path, service="svc", entities=labels, label="label", out=tmp_path / "m",
                 num_boost_round=2, progress=False, threads=1)  # fmt: skip
    edited = ODFV.replace('inputs["stats__avg"] * 3', 'inputs["stats__avg"] * 4')
    write_definitions(tmp_path, edited)
    run_apply = (
        r"'scored': its function in the repo changed since it was applied.*featurestore apply"
    )
    with pytest.raises(RegistryError, match=run_apply):
        FeatureStore(tmp_path).get_historical_features(ENTITIES, ["scored:r32"])
    with pytest.raises(RegistryError, match=run_apply):
        FeatureStore(tmp_path).get_online_features(["scored:r32"], ROWS)
    with pytest.raises(RegistryError, match=run_apply):
        models.predict(tmp_path / "m", tmp_path, labels)
    FeatureStore(tmp_path).apply()
    fresh = FeatureStore(tmp_path).get_historical_features(ENTITIES, ["scored:r32"]).to_arrow()
    assert fresh["r32"].to_pylist()[0] == 80.0
    binding = models.describe(tmp_path / "m", tmp_path).binding
    assert not binding.matches
    assert "scored: changed" in binding.mismatch()  # type: ignore[operator]
    assert "transformation code" in binding.mismatch()  # type: ignore[operator]


# --- definitions --------------------------------------------------------------------------

USER = Entity(name="user", join_keys=["user_id"])
SOURCE = FileSource(path="data/x.parquet", timestamp_field="ts")
A = FeatureView(
    name="a", entities=[USER], schema=[Field(name="amount", dtype=Float64)], source=SOURCE
)
B = FeatureView(
    name="b", entities=[USER], schema=[Field(name="amount", dtype=Float64)], source=SOURCE
)
REQUEST = RequestSource(name="req", schema=[Field(name="amount", dtype=Float64)])


def _identity(inputs: pd.DataFrame) -> pd.DataFrame:
    return inputs


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (
            [A, B],
            r"feature 'a:amount' and feature 'b:amount' would share the input column 'amount'",
        ),
        ([A, REQUEST], r"feature 'a:amount' and request field 'req:amount' would share"),
        ([A, A[["amount"]]], r"a source view is listed twice"),
        ([USER], r"sources must be feature views, projections"),
    ],
)
def test_inputs_sharing_a_name_and_bad_sources_are_refused_at_construction(
    sources: list[object], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message):
        on_demand_feature_view(sources=sources, schema=[Field(name="y", dtype=Float64)])(_identity)


def test_a_lambda_or_an_unknown_mode_is_refused() -> None:
    view = on_demand_feature_view(sources=[A], schema=[Field(name="y", dtype=Int64)])
    with pytest.raises(DefinitionError, match="lambda"):
        view(lambda df: df).transformation_code()
    with pytest.raises(DefinitionError, match="mode must be 'pandas' or 'python'"):
        on_demand_feature_view(sources=[A], schema=[Field(name="y", dtype=Int64)], mode="spark")(
            _identity
        )


def test_a_service_lists_on_demand_views_and_projections_of_them() -> None:
    odfv = on_demand_feature_view(
        sources=[A], schema=[Field(name="y", dtype=Float64), Field(name="z", dtype=Float64)]
    )(_identity)
    service = FeatureService(name="s", features=[A, odfv[["z"]]])
    assert service.refs == ["a:amount", "_identity:z"]
    with pytest.raises(DefinitionError, match=r"has no feature 'yy' \(did you mean 'y'"):
        odfv[["yy"]]


def test_a_repo_refuses_an_on_demand_view_named_like_a_view_or_reading_an_unknown_one(
    tmp_path: Path,
) -> None:
    from featurestore.repo import load_repo

    write_repo(tmp_path)
    write_definitions(
        tmp_path,
        ODFV.replace("@on_demand_feature_view(", "@on_demand_feature_view(name='stats',"),
        "",
    )
    with pytest.raises(DefinitionError, match=r"on-demand feature view 'stats'.*has the name of"):
        load_repo(tmp_path)
    write_definitions(
        tmp_path, ODFV, "\ndel stats  # the view is no longer defined at module level\n"
    )
    with pytest.raises(DefinitionError, match=r"reads feature view 'stats', which is not defined"):
        load_repo(tmp_path)


def test_the_registry_keeps_the_code_and_refuses_a_tampered_one(tmp_path: Path) -> None:
    import json

    from featurestore import FeatureStore

    write_repo(tmp_path).apply()
    path = tmp_path / "data" / "registry.json"
    data = json.loads(path.read_text())
    record = data["on_demand_feature_views"]["scored"]
    assert "out['ratio'] = inputs['amount'] / inputs['avg']" in record["definition"]["code"]
    record["definition"]["code"] += "\n# edited"
    path.write_text(json.dumps(data))
    with pytest.raises(RegistryError, match=r"'scored'.*stored code does not match its hash"):
        FeatureStore(tmp_path).state  # noqa: B018
    del data["on_demand_feature_views"]  # a registry from before on-demand views
    data["feature_services"] = {}
    path.write_text(json.dumps(data))
    assert FeatureStore(tmp_path).state.on_demand == {}


def test_python_mode_reads_and_returns_lists(tmp_path: Path) -> None:
    odfv = """
@on_demand_feature_view(
    sources=[stats[["avg"]], txn],
    schema=[Field(name="ratio", dtype=Float64), Field(name="r32", dtype=Float32)],
    mode="python",
)
def scored(inputs: dict) -> dict:
    ratio = [None if a is None or v is None else a / v for a, v in zip(inputs["amount"], inputs["avg"])]
    return {"ratio": ratio, "r32": [None if v is None else v * 3 for v in inputs["stats__avg"]]}
"""
    store = write_repo(tmp_path, odfv)
    store.apply()
    store.materialize(T0 - timedelta(days=10), T0 + HOUR)
    offline = store.get_historical_features(ENTITIES, ["scored:ratio", "scored:r32"]).to_arrow()
    online = store.get_online_features(["scored:ratio", "scored:r32"], ROWS, now=T0 + HOUR)
    assert offline["ratio"].to_pylist()[:2] == online.to_dict()["ratio"] == [0.25, 10.0]
    assert offline.schema.field("r32").type == pa.float32()
    store.close()


@settings(max_examples=40, deadline=None)
@given(
    columns=st.lists(
        st.sampled_from(
            ["Int32", "Int64", "Float32", "Float64", "String", "Bool", "UnixTimestamp"]
        ),
        min_size=1,
        max_size=5,
    ),
    rows=st.integers(0, 4),
    data=st.data(),
)
def test_the_input_frame_is_the_one_pandas_mapping_built_column_by_column(
    columns: list[str], rows: int, data: st.DataObject
) -> None:
    """``types.to_pandas_frame`` (the function's input) equals ``types.to_pandas`` of the
    same table: dtypes and values, nulls and NaN included; a shared array is one column."""
    from datetime import UTC, datetime

    from featurestore.types import dtype_by_name, to_pandas, to_pandas_frame

    values = {
        "Int32": st.integers(-(2**31), 2**31 - 1),
        "Int64": st.integers(-(2**63), 2**63 - 1),
        "Float32": st.floats(width=32),
        "Float64": st.floats(),
        "String": st.text(max_size=3),
        "Bool": st.booleans(),
        "UnixTimestamp": st.datetimes(timezones=st.just(UTC), max_value=datetime(2200, 1, 1)),
    }
    arrays = [
        pa.array(
            data.draw(st.lists(st.none() | values[c], min_size=rows, max_size=rows)),
            dtype_by_name(c).to_arrow(),
        )
        for c in columns
    ]
    names = [f"c{i}" for i in range(len(arrays))] + ["again"]
    arrays.append(arrays[0])
    expected = to_pandas(pa.Table.from_arrays(arrays, names=names))
    pd.testing.assert_frame_equal(to_pandas_frame(names, arrays), expected, check_exact=True)
    with pytest.raises(ValueError, match="names for"):  # built unchecked: refused up front
        to_pandas_frame(names[:-1], arrays)


def test_the_consistency_report_names_transformed_features_it_cannot_replay(
    tmp_path: Path,
) -> None:
    from featurestore import FeatureStore
    from featurestore.reports.consistency import _replayable

    write_repo(tmp_path).apply()
    state = FeatureStore(tmp_path).state
    log = pa.table(
        {name: pa.array([None], pa.string()) for name in ("scored__ratio", "scored__ratio__status")}
        | {"stats__avg": [1.0], "stats__avg__status": ["PRESENT"]}
    )
    refs, notes = _replayable(log, state, ())
    assert refs == {"stats__avg": "stats:avg"}
    assert notes == [
        "scored__ratio is computed at request time and not compared: the log has no request "
        "field 'amount' to replay it with (rows logged before the log recorded it); serve "
        "again, or pass --since after that change"
    ]
