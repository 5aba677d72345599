"""The aggregation functions: what each accepts, what it outputs, what an empty window gives.

One table, ``FUNCTIONS``, decides it for definitions (checked at construction or ``apply``),
for the partials each function needs (``partials.py``) and for the output dtypes both paths
produce. The semantics of each (nulls, NaN, infinities, overflow) are in the package
docstring (``featurestore/aggregations/__init__.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from featurestore.types import (
    Bool,
    DType,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)

NUMBERS = (Int32, Int64, Float32, Float64)
ALL = (Int32, Int64, Float32, Float64, String, Bool, UnixTimestamp)


@dataclass(frozen=True)
class Function:
    """One aggregation function: its name, the column dtypes it accepts, and the partial
    fields it reads (``partials.py``: ``n``, ``sum``, ``mean``, ``m2``, ``min``, ``max``,
    ``last``; every function also has ``count``)."""

    name: str
    accepts: tuple[DType, ...]
    fields: tuple[str, ...]

    def output_dtype(self, column: DType) -> DType:
        """The dtype of the function's output over a column of dtype ``column``."""
        if self.name == "count":
            return Int64
        if self.name in ("mean", "stddev", "variance"):
            return Float64
        if self.name == "sum":
            return Int64 if column in (Int32, Int64) else Float64
        return column  # min, max, last


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("count", ALL, ()),
        Function("sum", NUMBERS, ("n", "sum")),
        Function("mean", NUMBERS, ("n", "mean")),
        Function("stddev", NUMBERS, ("n", "mean", "m2")),
        Function("variance", NUMBERS, ("n", "mean", "m2")),
        Function("min", (*NUMBERS, UnixTimestamp), ("n", "min")),
        Function("max", (*NUMBERS, UnixTimestamp), ("n", "max")),
        Function("last", ALL, ("n", "last")),
    )
}


def accepted_names(function: Function) -> str:
    """``"Int32, Int64, Float32, Float64"``: what a function accepts, for messages."""
    return ", ".join(d.name for d in function.accepts)
