"""One feature's served values against its replayed values, row by row (numpy, vectorized).

``compare`` says, per row, whether the two values are the same (both null, or equal: floats
bit for bit, so NaN matches NaN and -0.0 does not match 0.0), which side is null, and for
numbers both values as float64 (for sMAPE and the quantiles of ``offline - online``). ``classes.classify`` then explains each row
that does not match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


@dataclass(frozen=True)
class ValueComparison:
    """Per row: ``online_null``, ``offline_null``, ``matched``; for numbers, both sides as
    float64 (NaN where null), None otherwise."""

    online_null: np.ndarray
    offline_null: np.ndarray
    matched: np.ndarray
    online_number: np.ndarray | None = None
    offline_number: np.ndarray | None = None


def _filled(column: pa.ChunkedArray | pa.Array, fill: object) -> np.ndarray:
    import numpy as np
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(column, fill).to_numpy(zero_copy_only=False))


def is_number(arrow_type: pa.DataType) -> bool:
    import pyarrow.types as pt

    return pt.is_integer(arrow_type) or pt.is_floating(arrow_type)


def compare(online: pa.ChunkedArray, offline: pa.ChunkedArray) -> ValueComparison:
    """Compare two columns of one Arrow type, row by row (module docstring)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as pt

    if online.type != offline.type:  # the log and the replay disagree on the dtype
        offline = offline.cast(online.type)
    online_null = np.asarray(pc.is_null(online).to_numpy(zero_copy_only=False), bool)
    offline_null = np.asarray(pc.is_null(offline).to_numpy(zero_copy_only=False), bool)
    both = ~online_null & ~offline_null
    numbers: tuple[np.ndarray, np.ndarray] | tuple[None, None] = (None, None)
    kind = online.type
    if pt.is_floating(kind):
        width = np.uint32 if kind == pa.float32() else np.uint64
        a, b = _filled(online, 0.0), _filled(offline, 0.0)
        equal = a.view(width) == b.view(width)
        numbers = _as_numbers(a, online_null), _as_numbers(b, offline_null)
    elif pt.is_integer(kind):
        a, b = _filled(online, 0), _filled(offline, 0)
        equal = a == b
        numbers = _as_numbers(a, online_null), _as_numbers(b, offline_null)
    elif pt.is_timestamp(kind):
        equal = _filled(online.cast(pa.int64()), 0) == _filled(offline.cast(pa.int64()), 0)
    else:
        equal = np.asarray(
            pc.fill_null(pc.equal(online, offline), False).to_numpy(zero_copy_only=False), bool
        )
    matched = (online_null & offline_null) | (both & equal)
    return ValueComparison(online_null, offline_null, matched, *numbers)


def _as_numbers(values: np.ndarray, null: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.where(null, np.nan, values.astype(np.float64))
