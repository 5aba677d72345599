"""The online codec is lossless, and its 16-byte prefix orders rows like (event, created)."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.columns import CREATED_TS, EVENT_TS
from featurestore.definitions import Field
from featurestore.errors import OnlineStoreError
from featurestore.online.codec import (
    RowCodec,
    decode_version,
    entity_key,
    entity_keys,
    from_us,
    timestamp_us,
    version_prefix,
)
from featurestore.types import ALL_DTYPES, Float32, Int64, String

TS = pa.timestamp("us", tz="UTC")
MIN_US = timestamp_us(datetime(1, 1, 1, tzinfo=UTC))
MAX_US = timestamp_us(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))

micros = st.integers(MIN_US, MAX_US)
float32_bits = st.integers(0, 2**32 - 1)
float64_bits = st.integers(0, 2**64 - 1)

# Each dtype: values as stored in Arrow (floats as IEEE bit patterns, timestamps as µs).
RAW_VALUES = {
    "Int32": st.integers(-(2**31), 2**31 - 1),
    "Int64": st.integers(-(2**63), 2**63 - 1),
    "Float32": float32_bits,
    "Float64": float64_bits,
    "String": st.text(),
    "Bool": st.booleans(),
    "UnixTimestamp": micros,
}


def arrow_column(dtype: str, raw: list[Any]) -> pa.Array:
    """Arrow values of ``dtype`` from raw values (None = null); floats built from their bits."""
    if dtype == "Float32":
        return pa.array(raw, pa.uint32()).view(pa.float32())
    if dtype == "Float64":
        return pa.array(raw, pa.uint64()).view(pa.float64())
    if dtype == "UnixTimestamp":
        return pa.array(raw, pa.int64()).cast(TS)
    return pa.array(raw, ALL_DTYPES[dtype].to_arrow())


def is_signalling_nan32(bits: int) -> bool:
    return (bits >> 23) & 0xFF == 0xFF and bits & 0x7FFFFF and not bits & 0x400000


def same_value(dtype: str, raw: Any, decoded: Any) -> bool:
    """Decoded equals raw, bit for bit (a signalling float32 NaN reads as its quiet twin)."""
    if raw is None or decoded is None:
        return raw is None and decoded is None
    if dtype == "Float32":
        bits = struct.unpack(">I", struct.pack(">f", decoded))[0]
        return bits == (raw | 0x400000 if is_signalling_nan32(raw) else raw)
    if dtype == "Float64":
        return struct.unpack(">Q", struct.pack(">d", decoded))[0] == raw
    if dtype == "UnixTimestamp":
        return decoded == from_us(raw)
    return type(decoded) is type(raw) and decoded == raw


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[Any]], list[int], list[int | None]]:
    dtypes = draw(st.lists(st.sampled_from(sorted(RAW_VALUES)), min_size=1, max_size=12))
    n = draw(st.integers(1, 6))
    columns = [draw(st.lists(st.none() | RAW_VALUES[d], min_size=n, max_size=n)) for d in dtypes]
    events = draw(st.lists(micros, min_size=n, max_size=n))
    created = draw(st.lists(st.none() | micros, min_size=n, max_size=n))
    return dtypes, columns, events, created


@settings(max_examples=150, deadline=None)
@given(tables())
def test_rows_round_trip_losslessly(table: Any) -> None:
    dtypes, columns, events, created = table
    features = [Field(name=f"f{i}", dtype=ALL_DTYPES[d]) for i, d in enumerate(dtypes)]
    batch = pa.RecordBatch.from_pydict(
        {f.name: arrow_column(d, c) for f, d, c in zip(features, dtypes, columns, strict=True)}
        | {
            EVENT_TS: pa.array(events, pa.int64()).cast(TS),
            CREATED_TS: pa.array(created, pa.int64()).cast(TS),
        }
    )
    codec = RowCodec(features)
    rows = codec.encode_batch(batch)
    assert len(rows) == len(events)
    for i, row in enumerate(rows):
        event, created_us, values = codec.decode(row)
        assert (event, created_us) == (events[i], created[i]) == decode_version(row)
        assert row[:16] == version_prefix(events[i], created[i])
        for j, dtype in enumerate(dtypes):
            assert same_value(dtype, columns[j][i], values[j]), (dtype, columns[j][i], values[j])
    # the read path decodes many rows at once, any subset of positions in any order
    positions = list(range(len(dtypes)))[::-1]
    decoded_events, decoded = codec.decode_columns(rows, positions)
    assert decoded_events == events
    for column, j in zip(decoded, positions, strict=True):
        for i, value in enumerate(column):
            assert same_value(dtypes[j], columns[j][i], value), (dtypes[j], columns[j][i], value)


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        (Float32, float("nan")),
        (Float32, -0.0),
        (Float32, float("inf")),
        (Float32, float("-inf")),
        (Float32, 3.4028234663852886e38),
        (Float32, 1.401298464324817e-45),  # the smallest subnormal
        (Int64, -(2**63)),
        (Int64, 2**63 - 1),
        (String, ""),
        (String, "ünïcødé ✓ \x00 |s3:x="),
    ],
)
def test_edge_values_survive(dtype: Any, value: Any) -> None:
    codec = RowCodec([Field(name="x", dtype=dtype)])
    event = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    [decoded] = codec.decode(codec.encode(event, None, [value]))[2]
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(decoded)
    else:
        assert decoded == value
        assert type(decoded) is type(value)
        if isinstance(value, float):
            assert math.copysign(1, decoded) == math.copysign(1, value)


def test_nan_is_a_value_and_null_is_null() -> None:
    codec = RowCodec([Field(name="a", dtype=Float32), Field(name="b", dtype=Float32)])
    event = datetime(2026, 1, 1, tzinfo=UTC)
    a, b = codec.decode(codec.encode(event, None, [float("nan"), None]))[2]
    assert math.isnan(a)
    assert b is None


def test_event_and_created_keep_microseconds() -> None:
    codec = RowCodec([Field(name="a", dtype=Int64)])
    event = datetime(2026, 3, 4, 5, 6, 7, 1, tzinfo=UTC)
    created = datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    ev, cr, _ = codec.decode(codec.encode(event, created, [1]))
    assert (from_us(ev), from_us(cr)) == (event, created)


versions = st.tuples(micros, st.none() | micros)


@settings(max_examples=300, deadline=None)
@given(versions, versions)
def test_prefix_bytes_order_like_event_then_created(a: Any, b: Any) -> None:
    def key(v: tuple[int, int | None]) -> tuple[int, float]:
        return v[0], -math.inf if v[1] is None else v[1]

    pa_, pb = version_prefix(*a), version_prefix(*b)
    assert (pa_ < pb) == (key(a) < key(b))
    assert (pa_ == pb) == (key(a) == key(b))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.text(), st.integers()), min_size=2, max_size=2, unique=True),
)
def test_entity_keys_are_injective(pairs: list[tuple[str, int]]) -> None:
    (s1, i1), (s2, i2) = pairs
    k1 = entity_key([("merchant", String, s1), ("user", Int64, i1)])
    k2 = entity_key([("merchant", String, s2), ("user", Int64, i2)])
    assert k1 != k2


def test_entity_keys_are_typed_sorted_and_match_the_batch_encoding() -> None:
    assert entity_key([("user_id", Int64, 1)]) != entity_key([("user_id", String, "1")])
    assert entity_key([("b", Int64, 1), ("a", String, "x")]) == "a=s1:x|b=i1"
    batch = pa.RecordBatch.from_pydict(
        {"b": pa.array([1, -5], pa.int32()), "a": pa.array(["x", "é|="], pa.string())}
    )
    assert entity_keys(batch, ["b", "a"]) == [
        entity_key([("b", Int64, 1), ("a", String, "x")]),
        entity_key([("b", Int64, -5), ("a", String, "é|=")]),
    ]


def test_null_or_float_keys_are_refused() -> None:
    with pytest.raises(OnlineStoreError, match="'k' holds nulls"):
        entity_keys(pa.RecordBatch.from_pydict({"k": pa.array([1, None])}), ["k"])
    with pytest.raises(OnlineStoreError, match="'k' has Arrow type double"):
        entity_keys(pa.RecordBatch.from_pydict({"k": pa.array([1.5])}), ["k"])


def test_a_null_event_time_is_refused() -> None:
    codec = RowCodec([Field(name="a", dtype=Int64)])
    batch = pa.RecordBatch.from_pydict(
        {"a": pa.array([1], pa.int64()), EVENT_TS: pa.array([None], TS)}
    )
    with pytest.raises(OnlineStoreError, match="'event_ts' holds nulls"):
        codec.encode_batch(batch)


def test_naive_datetimes_are_utc() -> None:
    assert timestamp_us(datetime(1970, 1, 1, 0, 0, 0, 1)) == 1
    assert timestamp_us(datetime(1970, 1, 1, 1, tzinfo=UTC)) == 3_600_000_000
