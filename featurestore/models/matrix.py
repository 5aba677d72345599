"""The one model-input matrix builder: a feature frame -> the float matrix LightGBM reads.

Training, batch prediction and the prediction service all call ``build_matrix``; nothing
else builds model input, so a value is encoded the same way wherever it is scored.

Encoding, per declared dtype:

- numbers (``Int32 Int64 Float32 Float64``) -> float64; a null (or a NaN) is NaN, which
  LightGBM treats as missing;
- ``Bool`` -> 1.0 / 0.0, null -> NaN;
- ``UnixTimestamp`` -> seconds since the Unix epoch, null -> NaN;
- ``String`` -> a category code from the mapping stored in the artifact: the i-th known
  category has code ``i + 1``; a null is NaN (missing); a value the mapping does not know
  gets ``UNKNOWN_CODE`` (0), a code no training row ever had, so LightGBM sends it down the
  "not one of the learned categories" branch. Categories are fitted on the training part
  only, and a warm start appends new ones after its parent's, so codes never shift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from featurestore.errors import ModelError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

UNKNOWN_CODE = 0
"""The code of a string value the artifact's mapping does not know (never seen in training)."""

_NUMERIC = {"Int32", "Int64", "Float32", "Float64"}


@dataclass(frozen=True)
class FeatureSpec:
    """One model input column, in the model's order.

    ``ref`` is the feature reference (``"view:feature"``), ``column`` the column holding it
    in a feature frame (``"view__feature"``), ``dtype`` the declared dtype's name, and
    ``categories`` the known values of a ``String`` feature (code ``i + 1`` is
    ``categories[i]``); None for other dtypes.
    """

    ref: str
    column: str
    dtype: str
    categories: tuple[str, ...] | None = None

    @property
    def is_categorical(self) -> bool:
        return self.dtype == "String"

    @cached_property
    def codes(self) -> dict[str, float]:
        """A known category's code (``i + 1``); every other value is ``UNKNOWN_CODE``."""
        return {c: float(i + 1) for i, c in enumerate(self.categories or ())}

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "column": self.column,
            "dtype": self.dtype,
            "categories": None if self.categories is None else list(self.categories),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureSpec:
        categories = data.get("categories")
        return cls(
            ref=data["ref"],
            column=data["column"],
            dtype=data["dtype"],
            categories=None if categories is None else tuple(categories),
        )


def build_matrix(
    frame: pd.DataFrame | pa.Table | Mapping[str, Sequence[Any]], features: Sequence[FeatureSpec]
) -> np.ndarray:
    """The model input for ``frame``: a float64 array, one row per frame row, one column per
    feature in ``features`` order (extra frame columns are ignored).

    Raises ``ModelError`` naming the column when a feature column is missing or holds values
    its dtype cannot encode, and when a ``String`` feature has no category mapping.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        from featurestore.types import to_pandas

        frame = to_pandas(frame)
    columns = list(frame.columns) if isinstance(frame, pd.DataFrame) else list(frame)
    missing = [f.column for f in features if f.column not in columns]
    if missing:
        raise ModelError(
            f"the feature frame lacks column(s) {missing} that the model reads; it has {columns}"
        )
    if not isinstance(frame, pd.DataFrame):
        return _build_from_columns(frame, features)
    matrix = np.empty((len(frame), len(features)), dtype=np.float64)
    for i, spec in enumerate(features):
        matrix[:, i] = _encode(frame[spec.column], spec)
    return matrix


def _build_from_columns(
    frame: Mapping[str, Sequence[Any]], features: Sequence[FeatureSpec]
) -> np.ndarray:
    """The same encoding on plain Python columns (an online response's values), without a
    DataFrame per call: what makes scoring a few rows cheap. Equal, bit for bit, to the frame
    path on the same values (tests/models/test_matrix.py checks it on random values)."""
    import numpy as np
    import pandas as pd

    lengths = {len(frame[spec.column]) for spec in features}
    if len(lengths) > 1:
        raise ModelError(f"the feature columns have different lengths: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    matrix = np.empty((n, len(features)), dtype=np.float64)
    nan = np.nan
    for i, spec in enumerate(features):
        values = frame[spec.column]
        if spec.dtype == "UnixTimestamp":  # rare: the frame path's own arithmetic
            matrix[:, i] = _encode(pd.Series(list(values), dtype=object), spec)
        elif spec.is_categorical:
            if spec.categories is None:
                raise ModelError(f"feature {spec.ref!r} is a String but has no category mapping")
            codes = spec.codes
            matrix[:, i] = [nan if v is None or v != v else codes.get(v, 0.0) for v in values]
        elif spec.dtype == "Bool" or spec.dtype in _NUMERIC:
            try:
                # every NaN becomes the one NaN, as in the frame path (payloads are noise)
                matrix[:, i] = [nan if v is None or v != v else v for v in values]
            except (TypeError, ValueError) as exc:
                raise ModelError(
                    f"column {spec.column!r} cannot be encoded as {spec.dtype} for feature "
                    f"{spec.ref!r}: {exc}"
                ) from None
        else:
            raise ModelError(
                f"feature {spec.ref!r} has dtype {spec.dtype!r}, which no model can read"
            )
    return matrix


def _encode(column: pd.Series, spec: FeatureSpec) -> np.ndarray:
    import numpy as np
    import pandas as pd

    try:
        if spec.is_categorical:
            if spec.categories is None:
                raise ModelError(f"feature {spec.ref!r} is a String but has no category mapping")
            if not (pd.api.types.is_string_dtype(column) or pd.api.types.is_object_dtype(column)):
                raise TypeError(f"expected strings, got dtype {column.dtype}")
            codes = pd.Index(spec.categories, dtype=object).get_indexer(column.astype(object))
            encoded = codes.astype(np.float64) + 1.0  # -1 (unknown or null) becomes 0
            encoded[column.isna().to_numpy()] = np.nan
            return encoded
        if spec.dtype == "UnixTimestamp":
            stamps = pd.to_datetime(column, utc=True)
            epoch = pd.Timestamp(0, tz="UTC")
            return ((stamps - epoch) / pd.Timedelta(seconds=1)).to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        if spec.dtype == "Bool" or spec.dtype in _NUMERIC:
            if pd.api.types.is_string_dtype(column) and not pd.api.types.is_object_dtype(column):
                raise TypeError(f"expected numbers, got dtype {column.dtype}")
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"column {spec.column!r} cannot be encoded as {spec.dtype} for feature "
            f"{spec.ref!r}: {exc}"
        ) from None
    raise ModelError(f"feature {spec.ref!r} has dtype {spec.dtype!r}, which no model can read")


def fit_categories(
    frame: pd.DataFrame, features: Sequence[FeatureSpec], parent: Sequence[FeatureSpec] = ()
) -> list[FeatureSpec]:
    """``features`` with the category mapping of each ``String`` feature fitted on ``frame``.

    Known categories are the non-null values seen, sorted. With a ``parent`` (warm start),
    the parent's categories keep their codes and newly seen ones are appended, sorted.
    """
    from dataclasses import replace

    inherited = {p.column: p.categories or () for p in parent}
    fitted = []
    for spec in features:
        if not spec.is_categorical:
            fitted.append(spec)
            continue
        seen = frame[spec.column].dropna().astype(str).unique().tolist()
        known = tuple(inherited.get(spec.column, ()))
        new = sorted(set(seen) - set(known))
        fitted.append(replace(spec, categories=known + tuple(new)))
    return fitted
