"""HTTP JSON encoding, decided once: every value the service writes goes through here.

- Integers as JSON integers (int64 exactly: JSON numbers have no size limit).
- Float64 as the shortest decimal that reads back to the same double (Python's ``repr``);
  Float32 as the shortest decimal that reads back to the same float32 (``0.1``, never
  ``0.10000000149011612``), so a client parsing it as float32 gets the stored bits.
- NaN and infinities as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (proto3's JSON
  rule, which Feast's clients read); JSON has no literal for them, and a NaN never turns a
  response into an error.
- Timestamps as RFC 3339 UTC with microseconds: ``"2026-01-31T12:00:00.000000Z"``.
- A NOT_FOUND value's event timestamp (and a join key column's) is ``"1970-01-01T00:00:00Z"``,
  as Feast's feature server writes it (its ``remote`` client cannot parse a null there).
- Strings as JSON strings, booleans as ``true``/``false``, null as ``null``.

Responses are built as text here rather than by a generic encoder: that is how Float32 and
NaN get their rule, and it is several times cheaper per value than validating a response model.

Request bodies are read by ``loads``, the one JSON reader (the fast path and the FastAPI
routes): Python's reader, except that a number beyond Float64's range (``1e400``), which it
would read as an infinity, is refused naming it, so it is never served, logged or stored as
Infinity. (The literals ``NaN`` and ``Infinity``, which Python's ``json.dumps`` writes, are
read as such.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from featurestore.online.codec import from_us
from featurestore.online.response import (
    NOT_FOUND,
    NULL_VALUE,
    OUTSIDE_MAX_AGE,
    PRESENT,
    OnlineResponse,
)

EPOCH_TIMESTAMP = "1970-01-01T00:00:00Z"
_EPOCH_JSON = f'"{EPOCH_TIMESTAMP}"'
_SPECIAL = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}


def float64(v: float) -> str:
    """A double as JSON: shortest round-trip decimal, or the proto3 string for NaN/inf."""
    if math.isfinite(v):
        return repr(v)
    return _SPECIAL[repr(v)]


def float32(v: float) -> str:
    """A float32 value (held in a Python float) as its shortest float32 decimal, written
    positionally or in scientific notation, whichever is shorter."""
    if math.isfinite(v):
        f = np.float32(v)
        text = str(f)  # positional unless very large or small: then never longer
        if "e" not in text:
            return text
        return min(text, np.format_float_positional(f, unique=True, trim="0"), key=len)
    return _SPECIAL[repr(v)]


def timestamp(moment: datetime) -> str:
    """An aware datetime as a JSON RFC 3339 UTC string with microseconds (years of four
    digits, which strftime's %Y does not pad)."""
    m = moment  # what strftime("%Y-%m-%dT%H:%M:%S.%fZ") writes, several times cheaper
    return (
        f'"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.'
        f'{m.microsecond:06d}Z"'
    )


def timestamp_us(us: int | None) -> str:
    """µs since the epoch as a JSON timestamp; None (not found) is the epoch, as in Feast."""
    return _EPOCH_JSON if us is None else timestamp(from_us(us))


def _string(v: str) -> str:
    return json.dumps(v)


def _boolean(v: bool) -> str:
    return "true" if v else "false"


_ENCODERS: dict[str, Callable[[Any], str]] = {
    "Int32": str,
    "Int64": str,
    "Float32": float32,
    "Float64": float64,
    "String": _string,
    "Bool": _boolean,
    "UnixTimestamp": timestamp,
}


def values(dtype: str, column: Iterable[Any]) -> str:
    """A column of one dtype's values (None = null) as a JSON array."""
    encode = _ENCODERS[dtype]
    return "[" + ",".join("null" if v is None else encode(v) for v in column) + "]"


def strings(column: Iterable[str]) -> str:
    return json.dumps(list(column))


_STATUSES = {s: json.dumps(s) for s in (PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE)}


def statuses(column: Iterable[str]) -> str:
    """A column of statuses (``strings``, with the four names encoded once)."""
    return "[" + ",".join([_STATUSES.get(s) or _string(s) for s in column]) + "]"


def online_features(response: OnlineResponse) -> str:
    """Feast's ``/get-online-features`` answer: join keys first, then every feature column,
    each with its values, statuses and event timestamps."""
    keys = response.to_dict()
    names = [name for name, _ in response.key_dtypes] + response.feature_names
    results = []
    for name, dtype in response.key_dtypes:
        n = len(keys[name])
        results.append(
            f'{{"values":{values(dtype.name, keys[name])},'
            f'"statuses":{statuses([PRESENT] * n)},'
            f'"event_timestamps":[{",".join([_EPOCH_JSON] * n)}]}}'
        )
    encoded_times: dict[int, str] = {}  # the features of one view share their event times
    for name, dtype in response.feature_dtypes:
        times = response.event_us[name]
        if id(times) not in encoded_times:
            encoded_times[id(times)] = "[" + ",".join(timestamp_us(us) for us in times) + "]"
        results.append(
            f'{{"values":{values(dtype.name, keys[name])},'
            f'"statuses":{statuses(response.statuses[name])},'
            f'"event_timestamps":{encoded_times[id(times)]}}}'
        )
    return f'{{"metadata":{{"feature_names":{strings(names)}}},"results":[{",".join(results)}]}}'


def prediction(
    request_id: str,
    model: str,
    fingerprint: str,
    sha256: str,
    predictions: Sequence[float],
    features: OnlineResponse | None,
) -> str:
    """``/predict``'s answer; ``features`` (when asked for) in ``online_features``' shape."""
    body = (
        f'{{"request_id":{_string(request_id)},"model":{_string(model)},'
        f'"model_fingerprint":{_string(fingerprint)},"model_sha256":{_string(sha256)},'
        f'"predictions":{values("Float64", map(float, predictions))}'
    )
    if features is not None:
        body += f',"features":{online_features(features)}'
    return body + "}"


def loads(body: bytes | str) -> Any:
    """A request body's JSON (module docstring); ``json.JSONDecodeError`` for a number
    beyond Float64's range, naming it."""
    return json.loads(body, parse_float=_finite_float)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise json.JSONDecodeError(
            f"the number {text} is beyond Float64's range (+-1.7976931348623157e308): send a "
            "finite number, or Infinity if that is the value",
            text,
            0,
        )
    return value
