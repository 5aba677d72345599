"""The HTTP JSON rules, decided once (serving/encoding.py), on the values that break naive JSON."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from featurestore.online.response import NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE, PRESENT
from serving import encoding


def test_nan_and_infinities_are_proto3_strings() -> None:
    assert encoding.float64(float("nan")) == '"NaN"'
    assert encoding.float64(float("inf")) == '"Infinity"'
    assert encoding.float64(float("-inf")) == '"-Infinity"'
    assert encoding.float32(float("nan")) == '"NaN"'
    assert encoding.float64(-0.0) == "-0.0" and encoding.float32(-0.0) == "-0.0"
    assert encoding.values("Float64", [1.5, None, float("nan")]) == '[1.5,null,"NaN"]'


@example(1000001.0)  # numpy's str() is 1.000001e+06: positional is shorter
@example(1e-05)
@example(3.4028234663852886e38)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_is_the_shortest_decimal_reading_back_to_the_same_float32(value: float) -> None:
    text = encoding.float32(value)
    parsed = json.loads(text)
    assert np.float32(parsed).tobytes() == np.float32(value).tobytes()
    assert len(text) <= len(repr(float(np.float32(value))))
    digits = text.split("e")[0].replace("-", "").replace(".", "").lstrip("0") or "0"
    assert len(digits.rstrip("0")) <= 9  # float32 never needs more than 9 significant digits


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float64_reads_back_exactly(value: float) -> None:
    assert json.loads(encoding.float64(value)) == value
    assert math.copysign(1, json.loads(encoding.float64(value))) == math.copysign(1, value)


def test_timestamps_are_rfc3339_utc_with_microseconds() -> None:
    assert encoding.timestamp_us(1_700_000_000_123_456) == '"2023-11-14T22:13:20.123456Z"'
    assert encoding.timestamp_us(None) == '"1970-01-01T00:00:00Z"'
    assert encoding.timestamp_us(0) == '"1970-01-01T00:00:00.000000Z"'


@given(st.text())
def test_strings_are_json_strings(value: str) -> None:
    assert json.loads(encoding.values("String", [value])) == [value]


@example(1e-4)
@example(9.999999e-5)
@example(1e16)
@example(9.999999e15)
@example(123456.0)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_is_the_shorter_of_numpys_two_forms(value: float) -> None:
    f = np.float32(value)  # the rule as first written; float32() skips one form when it can
    rule = min(str(f), np.format_float_positional(f, unique=True, trim="0"), key=len)
    assert encoding.float32(value) == rule


@given(st.datetimes(timezones=st.none() | st.timezones()))
def test_timestamps_are_written_as_strftime_writes_them(moment: datetime) -> None:
    """With a four-digit year (RFC 3339), which strftime's %Y does not pad before 1000."""
    expected = f'"{moment.year:04d}{moment.strftime("-%m-%dT%H:%M:%S.%fZ")}"'
    assert encoding.timestamp(moment) == expected
    assert encoding.timestamp(datetime(999, 1, 2, 3, 4, 5, 6)) == '"0999-01-02T03:04:05.000006Z"'


@given(st.lists(st.sampled_from([PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE]) | st.text()))
def test_statuses_are_json_strings(column: list[str]) -> None:
    assert json.loads(encoding.statuses(column)) == column
