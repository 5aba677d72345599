"""The one dtype table: our types <-> Arrow <-> DuckDB <-> BigQuery <-> pandas.

Parity is defined on Arrow: every feature leaves the store with the Arrow type its
declared dtype maps to here, and ``to_pandas`` is the only Arrow -> pandas conversion.
Heavy libraries are imported inside functions so ``import featurestore`` stays fast.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurestore.errors import DefinitionError, FeatureStoreError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


@dataclass(frozen=True)
class DType:
    """A feature's value type, as declared in ``Field(name=..., dtype=...)``."""

    name: str
    duckdb: str
    bigquery: str
    pandas: str

    def __repr__(self) -> str:
        return self.name

    def to_arrow(self) -> pa.DataType:
        """The Arrow type every value of this dtype carries."""
        import pyarrow as pa

        return {
            "Int32": pa.int32(),
            "Int64": pa.int64(),
            "Float32": pa.float32(),
            "Float64": pa.float64(),
            "String": pa.string(),
            "Bool": pa.bool_(),
            "UnixTimestamp": pa.timestamp("us", tz="UTC"),
        }[self.name]


Int32 = DType("Int32", "INTEGER", "INT64", "Int32")
Int64 = DType("Int64", "BIGINT", "INT64", "Int64")
Float32 = DType("Float32", "FLOAT", "FLOAT64", "Float32")
Float64 = DType("Float64", "DOUBLE", "FLOAT64", "Float64")
String = DType("String", "VARCHAR", "STRING", "string")
Bool = DType("Bool", "BOOLEAN", "BOOL", "boolean")
UnixTimestamp = DType("UnixTimestamp", "TIMESTAMPTZ", "TIMESTAMP", "datetime64[us, UTC]")

ALL_DTYPES: dict[str, DType] = {
    t.name: t for t in (Int32, Int64, Float32, Float64, String, Bool, UnixTimestamp)
}


KEY_DTYPES: tuple[DType, ...] = (Int32, Int64, String)
"""The dtypes a join key may have: integers and strings (``1`` and ``"1"`` are different keys).

Decided here once: definitions refuse other key dtypes at construction, ``apply`` refuses
a source whose undeclared key column has another type, and the online codec and reads
rely on it.
"""


def is_key_dtype(dtype: DType) -> bool:
    """Whether a join key may have this dtype (see ``KEY_DTYPES``)."""
    return dtype in KEY_DTYPES


INT_RANGES: dict[str, tuple[int, int]] = {
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": (-(2**63), 2**63 - 1),
}
"""The values an integer dtype can hold, both ends inclusive (a key outside is the wrong type)."""


def shared_key_dtype(a: DType, b: DType) -> DType | None:
    """The dtype of one entity column that is a join key declared ``a`` by one view and
    ``b`` by another: the wider of two integer dtypes (integer keys of every width compare
    equal), or None when one is a String and the other an integer (no column holds both)."""
    if a == b:
        return a
    if {a, b} == {Int32, Int64}:
        return Int64
    return None


def key_dtype_names() -> str:
    """``"Int32, Int64, String"``: the valid key dtypes, for messages."""
    return ", ".join(d.name for d in KEY_DTYPES)


class ValueType(enum.Enum):
    """Feast's ``ValueType`` (its members and numbers), for ``Entity(value_type=...)``.

    As in Feast, an entity's value type declares its join key's dtype when no view's schema
    declares it with a ``Field``; ``UNKNOWN`` means unspecified. Only the members mapping to a
    key dtype (``value_type_dtype``) are accepted; the others are importable so a Feast file
    imports, and refused by the ``Entity`` that uses them.
    """

    UNKNOWN = 0
    BYTES = 1
    STRING = 2
    INT32 = 3
    INT64 = 4
    DOUBLE = 5
    FLOAT = 6
    BOOL = 7
    UNIX_TIMESTAMP = 8
    BYTES_LIST = 11
    STRING_LIST = 12
    INT32_LIST = 13
    INT64_LIST = 14
    DOUBLE_LIST = 15
    FLOAT_LIST = 16
    BOOL_LIST = 17
    UNIX_TIMESTAMP_LIST = 18
    NULL = 19
    MAP = 20
    MAP_LIST = 21
    BYTES_SET = 22
    STRING_SET = 23
    INT32_SET = 24
    INT64_SET = 25
    DOUBLE_SET = 26
    FLOAT_SET = 27
    BOOL_SET = 28
    UNIX_TIMESTAMP_SET = 29
    PDF_BYTES = 30
    IMAGE_BYTES = 31
    JSON = 32
    JSON_LIST = 33
    STRUCT = 34
    STRUCT_LIST = 35
    UUID = 36
    TIME_UUID = 37
    UUID_LIST = 38
    TIME_UUID_LIST = 39
    UUID_SET = 40
    TIME_UUID_SET = 41
    VALUE_LIST = 42


_VALUE_TYPE_DTYPES = {
    ValueType.STRING: String,
    ValueType.INT32: Int32,
    ValueType.INT64: Int64,
    ValueType.DOUBLE: Float64,
    ValueType.FLOAT: Float32,
    ValueType.BOOL: Bool,
    ValueType.UNIX_TIMESTAMP: UnixTimestamp,
}


def value_type_dtype(value_type: ValueType, what: str) -> DType | None:
    """The join-key dtype Feast's ``value_type`` declares (None for ``UNKNOWN``: unspecified);
    a value type a join key cannot have is a ``DefinitionError`` naming ``what``."""
    if not isinstance(value_type, ValueType):
        raise DefinitionError(f"{what}: value_type must be a ValueType, got {value_type!r}")
    if value_type is ValueType.UNKNOWN:
        return None
    dtype = _VALUE_TYPE_DTYPES.get(value_type)
    if dtype is None or not is_key_dtype(dtype):
        raise DefinitionError(
            f"{what}: value_type {value_type} cannot type a join key; use one of "
            + ", ".join(
                f"ValueType.{v.name}" for v, d in _VALUE_TYPE_DTYPES.items() if is_key_dtype(d)
            )
            + f" (dtypes {key_dtype_names()})"
        )
    return dtype


# --- time: naive means UTC, and one accepted range ---------------------------------------

MIN_TIME = datetime(1677, 9, 22, 0, 12, 44, tzinfo=UTC)
MAX_TIME = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)
"""The accepted time range, both ends inclusive: what pandas' nanosecond timestamps can hold
(1677-09-22 to 2262-04-11), so ``.to_df()`` never overflows. Times outside it are refused
where they enter (materialization windows, ``now``, entity rows)."""

MAX_TTL = MAX_TIME - MIN_TIME
FUTURE_ALLOWANCE = timedelta(minutes=1)
"""How far after the current time a push's event time or a materialization's end may be
(a client's clock may run ahead of this machine's)."""
"""The longest ttl accepted (about 584 years): ``t - ttl`` stays far from Python's year 1."""


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime: a naive datetime is read as UTC (the one rule)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def check_time(
    moment: datetime, what: str, error: type[FeatureStoreError] = FeatureStoreError
) -> datetime:
    """``moment`` as aware UTC, or ``error`` naming ``what`` when it is outside the range."""
    if not isinstance(moment, datetime):
        raise error(f"{what} must be a datetime (naive = UTC), got {moment!r}")
    utc = as_utc(moment)
    if not MIN_TIME <= utc <= MAX_TIME:
        raise error(
            f"{what} {utc.isoformat()} is outside the accepted time range "
            f"{MIN_TIME.isoformat()} .. {MAX_TIME.isoformat()} (what pandas can hold)"
        )
    return utc


def parse_iso_times(
    values: pa.Array | pa.ChunkedArray, what: str, error: type[FeatureStoreError]
) -> pa.Array:
    """ISO 8601 strings (naive means UTC; nulls stay null) as UTC times at pandas'
    nanosecond precision (the caller casts to microseconds by its own rule). A string that is
    no such time, or one outside what pandas can hold, is ``error`` naming ``what``, the
    first such row and its value, in one line. The one parser of time strings: entity rows'
    ``event_timestamp`` and pushed rows' times."""
    import pandas as pd
    import pyarrow as pa

    strings = values.to_pandas()
    try:
        parsed = pd.to_datetime(strings, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        for row, value in enumerate(strings):
            if value is None or pd.isna(value):
                continue
            try:
                pd.to_datetime(value, utc=True, format="ISO8601")
            except pd.errors.OutOfBoundsDatetime:
                raise error(
                    f"{what}: row {row} holds {value!r}, outside the accepted time range "
                    f"{MIN_TIME.isoformat()} .. {MAX_TIME.isoformat()}"
                ) from None
            except (ValueError, TypeError):
                raise error(
                    f"{what}: row {row} holds {value!r}, which is not a timestamp; use "
                    "ISO 8601 like '2024-05-01T12:00:00Z'"
                ) from None
        raise
    return pa.array(parsed)


def check_ttl(ttl: timedelta, what: str) -> None:
    """Refuse a negative ttl or one longer than ``MAX_TTL``, naming ``what``."""
    if ttl < timedelta(0):
        raise DefinitionError(f"{what}: ttl {ttl} is negative")
    if ttl > MAX_TTL:
        raise DefinitionError(
            f"{what}: ttl {ttl} is longer than the maximum {MAX_TTL.days} days; "
            "use ttl=None for no bound"
        )


def dtype_by_name(name: str) -> DType:
    """Look a dtype up by its name (``"Int64"``), as stored in the registry."""
    try:
        return ALL_DTYPES[name]
    except KeyError:
        known = ", ".join(ALL_DTYPES)
        raise DefinitionError(f"unsupported dtype {name!r}; use one of {known}") from None


def dtype_from_arrow(arrow_type: pa.DataType) -> DType | None:
    """The dtype whose values an Arrow column of this type holds, or None if none fits.

    Signed and unsigned integers up to 32 bits fit; ``uint64`` does not (values at or above
    2**63 are not Int64), so a uint64 source column or key is refused where it is checked,
    naming the column: cast it to int64 (or to a string key) in the source.
    """
    import pyarrow as pa
    import pyarrow.types as pt

    if pt.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pt.is_int8(arrow_type) or pt.is_int16(arrow_type) or pt.is_int32(arrow_type):
        return Int32
    if pt.is_uint8(arrow_type) or pt.is_uint16(arrow_type):
        return Int32
    if pt.is_uint64(arrow_type):
        return None  # values at or above 2**63 do not fit Int64: no dtype holds them all
    if pt.is_integer(arrow_type):
        return Int64
    if pt.is_float32(arrow_type) or pt.is_float16(arrow_type):
        return Float32
    if pt.is_float64(arrow_type):
        return Float64
    if pt.is_string(arrow_type) or pt.is_large_string(arrow_type) or arrow_type == pa.string_view():
        return String
    if pt.is_boolean(arrow_type):
        return Bool
    if pt.is_timestamp(arrow_type):
        return UnixTimestamp
    return None


def arrow_compatible(declared: DType, arrow_type: pa.DataType) -> bool:
    """Whether a source column of ``arrow_type`` can be read losslessly as ``declared``.

    Narrower integers widen (an int32 or uint32 column may back an Int64 feature), float32
    may back Float64; anything else must match exactly (never uint64: see
    ``dtype_from_arrow``).
    """
    actual = dtype_from_arrow(arrow_type)
    if actual is None:
        return False
    widening = {(Int32, Int64), (Float32, Float64)}
    return actual == declared or (actual, declared) in widening


def is_timestamp(arrow_type: pa.DataType) -> bool:
    """Whether an Arrow column can serve as an event or created timestamp."""
    import pyarrow.types as pt

    return pt.is_timestamp(arrow_type) or pt.is_date(arrow_type)


def pandas_dtype(dtype: DType) -> Any:
    """The pandas (nullable) dtype a feature of ``dtype`` has in ``.to_df()``."""
    return dtype.pandas


@functools.cache
def _pandas_types() -> dict[pa.DataType, Any]:
    """The one Arrow -> pandas mapping: nullable pandas dtypes (``to_pandas`` and
    ``to_pandas_frame``); types not listed (timestamps) convert with pyarrow's defaults."""
    import pandas as pd
    import pyarrow as pa

    return {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
        pa.float32(): pd.Float32Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
        pa.large_string(): pd.StringDtype(),
    }


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Convert Arrow to pandas with nullable dtypes: nulls become ``pd.NA``, ints stay ints.

    The one Arrow -> pandas conversion used everywhere (training sets, online responses).
    Timestamps stay timezone-aware UTC at microsecond precision.
    """
    return table.to_pandas(types_mapper=_pandas_types().get)


def to_pandas_frame(names: Sequence[str], arrays: Sequence[pa.Array]) -> pd.DataFrame:
    """``to_pandas`` of the table of ``arrays`` (of one length) named ``names``, built column
    by column: the same dtypes and values (tested equal), several times cheaper for a table
    of a few rows (a request-time transformation's input), where pyarrow's table conversion
    costs most. An array given under several names is converted once."""
    import pandas as pd

    if len(names) != len(arrays):  # the frame below is built without checks
        raise ValueError(f"{len(names)} names for {len(arrays)} arrays")
    mapping = _pandas_types()
    converted: dict[int, Any] = {}
    columns = []
    for array in arrays:
        values = converted.get(id(array))
        if values is None:
            dtype = mapping.get(array.type)
            values = array.to_pandas().array if dtype is None else dtype.__from_arrow__(array)
            converted[id(array)] = values
        columns.append(values)
    # pandas' own constructor from finished columns (what ``DataFrame(dict)`` ends with),
    # without re-checking each column: they are pandas arrays of one length already.
    # One Index object per set of names: it keeps its lookup table between calls, which
    # pandas otherwise rebuilds on a new frame's first column access.
    return pd.DataFrame._from_arrays(
        columns,
        _column_index(tuple(names)),
        pd.RangeIndex(len(arrays[0]) if arrays else 0),
        verify_integrity=False,
    )


@functools.lru_cache(maxsize=256)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    import pandas as pd

    return pd.Index(names)


# --- computed and given values cast to a declared dtype: one rule -------------------------


def coercible(arrow_type: pa.DataType, dtype: DType) -> bool:
    """Whether values of ``arrow_type`` may be cast to ``dtype`` by ``coerce`` (by type; a
    value may still be refused, e.g. 1.5 into an integer)."""
    import pyarrow.types as pt

    if pt.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pt.is_null(arrow_type):
        return True
    if dtype.name in ("Int32", "Int64", "Float32", "Float64"):
        return pt.is_integer(arrow_type) or pt.is_floating(arrow_type)
    if dtype.name == "String":
        return dtype_from_arrow(arrow_type) == String
    if dtype.name == "Bool":
        return pt.is_boolean(arrow_type)
    return pt.is_timestamp(arrow_type)


def coerce(
    values: pa.Array | pa.ChunkedArray,
    dtype: DType,
    what: str,
    error: type[FeatureStoreError] = FeatureStoreError,
    *,
    computed: bool = False,
) -> pa.Array:
    """``values`` as ``dtype``'s Arrow type: the one rule for values computed or given at
    request time (transformation outputs, ``computed=True``; request fields, pushed rows,
    entity keys).

    Numbers convert between integer and float dtypes when no value changes, except that a
    float into Float32 rounds to the nearest float32 (what float32 arithmetic does); a
    non-integral float (or NaN, or an infinity) into Int32/Int64, an integer outside the
    dtype's range, or an integer a Float64 cannot hold exactly is refused. A finite float
    beyond Float32's range rounds to an infinity when ``computed`` (what float32 arithmetic
    gives, the same on both paths) and is refused when given (a pushed value or a request
    field of 1e39 would silently become Infinity; DuckDB's cast refuses it too). NaN and
    infinities given as such stay what they are. Strings become String only, booleans Bool
    only, timestamps UnixTimestamp only (naive means UTC; a timestamp finer than a
    microsecond is refused). Nulls stay null. A refusal raises ``error`` naming ``what``,
    the dtype and the type found, or the first row whose value does not fit, and that value.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pt.is_dictionary(values.type):
        values = values.dictionary_decode()
    target = dtype.to_arrow()
    if values.type == target:
        return values
    if not coercible(values.type, dtype):
        raise error(f"{what} is {dtype} but holds {values.type} values; give {dtype} values")
    if pt.is_null(values.type):
        return pa.nulls(len(values), target)
    if dtype is Float32 and pt.is_floating(values.type):
        rounded = values.cast(target, safe=False)  # rounds to the nearest float32
        overflow = pc.and_(pc.is_finite(values), pc.is_inf(rounded))
        if not computed and pc.any(overflow).as_py():
            row = pc.index(overflow, True).as_py()
            raise error(
                f"{what} is Float32, and row {row} holds {values[row].as_py()!r}, beyond "
                f"Float32's range (+-{FLOAT32_MAX!r}): give a smaller value or declare Float64"
            )
        return rounded
    if pt.is_timestamp(values.type) and values.type.tz is None:
        values = values.cast(pa.timestamp(values.type.unit, tz="UTC"))  # naive means UTC
    try:
        return values.cast(target)  # safe: refuses any value that would change
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        row = _first_misfit(values, target)
        hint = " (round it to microseconds)" if dtype is UnixTimestamp else ""
        raise error(
            f"{what} is {dtype}, and row {row} holds {values[row].as_py()!r}, which does not "
            f"fit: {exc}{hint}"
        ) from None


FLOAT32_MAX = 3.4028234663852886e38
"""The largest finite float32: a finite value beyond it (after rounding) does not fit Float32."""


def _first_misfit(values: pa.Array, target: pa.DataType) -> int:
    """The first row of ``values`` (whose safe cast to ``target`` failed) that cannot be
    cast: halves are cast in turn, about one more pass over the values."""
    import pyarrow as pa

    low, high = 0, len(values)  # the first misfit lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            values.slice(low, middle - low).cast(target)
            low = middle
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            high = middle
    return low


# --- Feast types that featurestore deliberately does not support ---------------------------


class UnsupportedType:
    """A Feast type featurestore does not store (``Map``, ``Json``, ``Array(...)``,
    ``Struct(...)``): a ``Field`` of it fails at construction, naming it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def __call__(self, *args: Any, **kwargs: Any) -> UnsupportedType:
        return UnsupportedType(f"{self.name}(...)")


Map = UnsupportedType("Map")
Json = UnsupportedType("Json")
Array = UnsupportedType("Array")
Struct = UnsupportedType("Struct")
