"""What ``apply`` checks of an on-demand view by running it on a sample, before recording it.

The sample: up to ``SAMPLE_ROWS`` rows of each source view's first Parquet file (the features
it reads, cast to their declared dtypes; row ``i`` of every view side by side), topped up to
``MIN_ROWS`` rows with varied made-up values, and made-up request fields. On it, through the
same ``transforms.transform`` serving and training use:

1. batched (all rows in one call), the function must return every declared output column,
   one row per input row, with values that fit the declared dtypes;
2. row by row (one call per row, as serving computes one entity), every output must equal the
   batched one, bit for bit: a transformation must be row-local (a row's output depends on
   that row only). ``x / x.mean()`` or ``x.rank()`` is not, and would give a training set
   that serving can never reproduce.

Any failure is a ``DefinitionError`` naming the view (and the column or the row). A sample
cannot prove a function correct: an exception on values it never saw (a null, say) surfaces
at first use instead, as a ``TransformationError`` naming the view.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.definitions import FeatureView, FileSource
from featurestore.errors import FeatureStoreError, SchemaMismatchError
from featurestore.transforms import (
    Transformation,
    TransformInput,
    TransformOutput,
    transform,
)
from featurestore.types import DType

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.on_demand import OnDemandFeatureView

SAMPLE_ROWS = 16
MIN_ROWS = 8
_MADE_UP: dict[str, list[Any]] = {
    "Int32": [3, 1, 4, 1, 5, 9, 2, 6, -7, 0],
    "Int64": [30, 10, 40, 10, 50, 90, 20, 60, -70, 0],
    "Float32": [0.5, 1.25, 3.0, -2.5, 8.0, 0.125, 12.5, 2.0],
    "Float64": [10.5, 2.25, 7.0, -3.5, 100.0, 0.75, 42.0, 1.5],
    "String": ["a", "bb", "c", "", "dd", "a", "e", "fff"],
    "Bool": [True, False, True, True, False, False, True, False],
}


def check_on_demand(view: OnDemandFeatureView, repo_path: Path) -> None:
    """Run ``view``'s function on a sample of its sources (module docstring)."""
    from featurestore.errors import DefinitionError

    columns, rows = _sample(view, repo_path)
    step = Transformation(
        view=view.name,
        fingerprint="",
        mode=view.mode,
        function=view.udf,  # type: ignore[arg-type]  # a repo's view always has its function
        inputs=tuple(_inputs(view)),
        outputs=tuple(TransformOutput(f.name, f.dtype, f.name) for f in view.features),
    )
    what = f"on-demand feature view {view.name!r}"
    try:
        batched = transform([step], columns, rows)
    except FeatureStoreError as exc:
        raise DefinitionError(
            f"{exc} (on a sample of {rows} rows of its sources, at apply)"
        ) from None
    for i in range(rows):
        one = {name: values.slice(i, 1) for name, values in columns.items()}
        try:
            alone = transform([step], one, 1)
        except FeatureStoreError as exc:
            raise DefinitionError(f"{exc} (on sample row {i} alone, at apply)") from None
        for name, values in batched.items():
            together, single = values[i], alone[name][0]
            if not _same(together, single):
                raise DefinitionError(
                    f"{what} is not row-local: its output {name!r} for sample row {i} is "
                    f"{together.as_py()!r} computed with the other rows but {single.as_py()!r} "
                    "alone. A row's output must depend on that row only (not on x.mean(), "
                    "x.rank(), x.shift() or randomness): serving computes one row at a time"
                )


def _inputs(view: OnDemandFeatureView) -> list[TransformInput]:
    inputs = [
        TransformInput(f"{p.view.name}__{f}", (f, f"{p.view.name}__{f}"), p.view.feature(f).dtype)
        for p in view.source_projections
        for f in p.features
    ]
    inputs += [
        TransformInput(f.name, (f.name,), f.dtype, r.name)
        for r in view.request_sources
        for f in r.schema
    ]
    return inputs


def _sample(view: OnDemandFeatureView, repo_path: Path) -> tuple[dict[str, pa.Array], int]:
    """The sample's input columns (by ``_inputs``' column names) and its row count."""
    import pyarrow as pa

    real = {}
    for p in view.source_projections:
        assert isinstance(p.view, FeatureView)  # on_demand.py accepts only feature views
        read = _source_rows(p.view, p.features, repo_path)
        for name in p.features:
            real[f"{p.view.name}__{name}"] = (p.view.feature(name).dtype, read.get(name, []))
    rows = max([MIN_ROWS, *(len(values) for _, values in real.values())])
    columns = {}
    for column, (dtype, values) in real.items():
        columns[column] = pa.array(_fill(values, dtype, rows), dtype.to_arrow())
    for f in view.request_fields:
        columns[f.name] = pa.array(_fill([], f.dtype, rows), f.dtype.to_arrow())
    return columns, rows


def _source_rows(view: FeatureView, features: tuple[str, ...], repo: Path) -> dict[str, list[Any]]:
    """Up to ``SAMPLE_ROWS`` values of each feature from the view's first file (none for
    other sources, aggregated views, or when the file holds no rows), cast to their
    declared dtypes."""
    import pyarrow.parquet as pq

    from featurestore.sources import parquet_files

    source = view.batch_source
    if not isinstance(source, FileSource) or view.is_aggregated:
        return {}  # an aggregated view's features are not source columns: made-up values
    try:
        first = parquet_files(source, repo)[0]
    except SchemaMismatchError:
        return {}
    batch = next(pq.ParquetFile(first).iter_batches(SAMPLE_ROWS, columns=list(features)), None)
    if batch is None:
        return {}
    return {f: batch.column(f).cast(view.feature(f).dtype.to_arrow()).to_pylist() for f in features}


def _fill(values: list[Any], dtype: DType, rows: int) -> list[Any]:
    """``values`` cycled, or made up, to ``rows`` values (real nulls are kept)."""
    if not values:
        if dtype.name == "UnixTimestamp":
            base = datetime(2024, 1, 1, tzinfo=UTC)
            values = [base + timedelta(hours=7 * i) for i in range(MIN_ROWS)]
        else:
            values = _MADE_UP[dtype.name]
    return [values[i % len(values)] for i in range(rows)]


def _same(a: pa.Scalar, b: pa.Scalar) -> bool:
    """Equal values, floats by their bits (every NaN alike)."""
    import math

    x, y = a.as_py(), b.as_py()
    if isinstance(x, float) and isinstance(y, float):
        return (math.isnan(x) and math.isnan(y)) or x.hex() == y.hex()
    return bool(x == y) and (x is None) == (y is None)
