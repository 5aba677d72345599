"""The one model-input matrix builder: column order, dtypes, nulls, unseen categories."""

import math
from datetime import UTC

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.errors import ModelError
from featurestore.models import UNKNOWN_CODE, FeatureSpec, build_matrix
from featurestore.models.matrix import fit_categories

SPECS = [
    FeatureSpec("v:country", "v__country", "String", ("DE", "FR", "US")),
    FeatureSpec("v:amount", "v__amount", "Float64"),
    FeatureSpec("v:n", "v__n", "Int32"),
    FeatureSpec("v:verified", "v__verified", "Bool"),
    FeatureSpec("v:seen", "v__seen", "UnixTimestamp"),
]


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            # extra columns and a different column order than the model's
            "user_id": pd.array([1, 2, 3, 4], dtype="Int64"),
            "v__seen": pd.to_datetime(
                ["1970-01-01T00:00:10Z", None, "2026-01-01T00:00:00Z", "1970-01-01T00:00:00Z"],
                utc=True,
            ),
            "v__verified": pd.array([True, False, None, True], dtype="boolean"),
            "v__n": pd.array([3, None, -1, 0], dtype="Int32"),
            "v__amount": pd.array([1.5, None, 2.0, float("nan")], dtype="Float64"),
            "v__country": pd.array(["US", "DE", None, "BR"], dtype="string"),
        }
    )


def test_columns_follow_the_artifact_order_and_dtypes_encode() -> None:
    m = build_matrix(frame(), SPECS)
    assert m.dtype == np.float64 and m.shape == (4, 5)
    # country: known categories get code index + 1
    assert m[0, 0] == 3.0 and m[1, 0] == 1.0
    assert m[0, 1] == 1.5 and m[2, 1] == 2.0
    assert m[0, 2] == 3.0 and m[2, 2] == -1.0 and m[3, 2] == 0.0
    assert list(m[[0, 1], 3]) == [1.0, 0.0]
    assert m[0, 4] == 10.0 and m[3, 4] == 0.0
    assert m[2, 4] == pd.Timestamp("2026-01-01", tz="UTC").timestamp()


def test_nulls_are_nan_and_unseen_categories_are_the_unknown_code() -> None:
    m = build_matrix(frame(), SPECS)
    assert math.isnan(m[2, 0])  # null country: missing, not unknown
    assert m[3, 0] == UNKNOWN_CODE == 0  # "BR" was never seen in training
    assert math.isnan(m[1, 1]) and math.isnan(m[3, 1])  # null and a stored NaN
    assert math.isnan(m[1, 2]) and math.isnan(m[2, 3]) and math.isnan(m[1, 4])


def test_reordering_specs_reorders_columns() -> None:
    m = build_matrix(frame(), SPECS)
    reversed_m = build_matrix(frame(), SPECS[::-1])
    np.testing.assert_array_equal(reversed_m, m[:, ::-1])


def test_arrow_tables_and_plain_mappings_encode_like_dataframes() -> None:
    df = frame()
    expected = build_matrix(df, SPECS)
    np.testing.assert_array_equal(build_matrix(pa.Table.from_pandas(df), SPECS), expected)
    row = {"v__country": ["FR", "XX"], "v__amount": [None, 4.0], "v__n": [1, 2]}
    row |= {"v__verified": [None, False], "v__seen": [None, None]}
    m = build_matrix(row, SPECS)
    assert m[0, 0] == 2.0 and m[1, 0] == UNKNOWN_CODE
    assert math.isnan(m[0, 1]) and m[1, 1] == 4.0 and math.isnan(m[0, 3])


def test_missing_column_names_it() -> None:
    with pytest.raises(ModelError, match=r"v__n"):
        build_matrix(frame().drop(columns=["v__n"]), SPECS)


def test_wrong_type_names_the_column() -> None:
    df = frame().assign(v__amount=pd.array(["a", "b", "c", "d"], dtype="string"))
    with pytest.raises(ModelError, match=r"'v__amount' cannot be encoded as Float64"):
        build_matrix(df, SPECS)


def test_fit_categories_sorts_and_a_parent_keeps_its_codes() -> None:
    specs = [FeatureSpec("v:c", "v__c", "String"), FeatureSpec("v:x", "v__x", "Float64")]
    df = pd.DataFrame({"v__c": pd.array(["b", "a", None, "b"], dtype="string"), "v__x": 1.0})
    fitted = fit_categories(df, specs)
    assert fitted[0].categories == ("a", "b") and fitted[1].categories is None
    parent = [FeatureSpec("v:c", "v__c", "String", ("z", "b"))]
    refitted = fit_categories(df, specs, parent)
    assert refitted[0].categories == ("z", "b", "a")  # parent codes 1, 2 unchanged; "a" appended
    codes = build_matrix(df, refitted)[:, 0]
    assert codes[0] == 2.0 and codes[1] == 3.0


names = st.text(alphabet="abcXYZ_é", min_size=0, max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    categories=st.lists(names, unique=True, max_size=6),
    values=st.lists(st.one_of(st.none(), names), max_size=30),
    numbers=st.data(),
)
def test_every_value_encodes_by_the_one_rule(categories, values, numbers) -> None:
    ints = numbers.draw(
        st.lists(
            st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
            min_size=len(values),
            max_size=len(values),
        )
    )
    frame = pd.DataFrame(
        {
            "c": pd.array(values, dtype="string"),
            "n": pd.array(ints, dtype="Int32"),
        }
    )
    specs = [FeatureSpec("v:c", "c", "String", tuple(categories)), FeatureSpec("v:n", "n", "Int32")]
    m = build_matrix(frame, specs)
    for row, (value, number) in enumerate(zip(values, ints, strict=True)):
        if value is None:
            assert math.isnan(m[row, 0])
        elif value in categories:
            assert m[row, 0] == categories.index(value) + 1
        else:
            assert m[row, 0] == UNKNOWN_CODE
        assert math.isnan(m[row, 1]) if number is None else m[row, 1] == number


ALL_DTYPES = ["Int32", "Int64", "Float32", "Float64", "Bool", "String", "UnixTimestamp"]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_plain_columns_encode_bit_for_bit_like_the_arrow_frame(data) -> None:
    """The per-row path (an online response's Python values) equals the training frame path
    (Arrow -> nullable pandas) on the same values, bit for bit: one builder, one rule."""
    n = data.draw(st.integers(0, 12))
    values = {
        "Int32": st.integers(-(2**31), 2**31 - 1),
        "Int64": st.integers(-(2**63), 2**63 - 1),
        "Float32": st.floats(width=32),
        "Float64": st.floats(),
        "Bool": st.booleans(),
        "String": names,
        "UnixTimestamp": st.datetimes(
            min_value=pd.Timestamp("1700-01-01").to_pydatetime(),
            max_value=pd.Timestamp("2260-01-01").to_pydatetime(),
            timezones=st.just(UTC),
        ),
    }
    columns = {
        dtype: data.draw(st.lists(st.one_of(st.none(), values[dtype]), min_size=n, max_size=n))
        for dtype in ALL_DTYPES
    }
    arrow = {
        "Int32": pa.int32(),
        "Int64": pa.int64(),
        "Float32": pa.float32(),
        "Float64": pa.float64(),
        "Bool": pa.bool_(),
        "String": pa.string(),
        "UnixTimestamp": pa.timestamp("us", tz="UTC"),
    }
    table = pa.table({d: pa.array(columns[d], arrow[d]) for d in ALL_DTYPES})
    categories = tuple(sorted({v for v in columns["String"] if v is not None}))[:3]
    specs = [FeatureSpec(f"v:{d}", d, d, categories if d == "String" else None) for d in ALL_DTYPES]
    from featurestore.types import to_pandas

    frame_path = build_matrix(to_pandas(table), specs)
    plain = {d: table[d].to_pylist() for d in ALL_DTYPES}  # Python values, as a read decodes
    assert build_matrix(plain, specs).tobytes() == frame_path.tobytes()
