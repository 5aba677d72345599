"""The entity rows of a request, read once for every caller: the Python API, ``training-set``,
``train`` and ``predict-batch``.

``entity_df`` may be a pandas DataFrame, a pyarrow Table, a path to a Parquet file, a
folder of Parquet files (read in sorted path order) or a ``.csv`` file, or a SQL query
string run by the offline engine. CSV columns are typed by inference, except the join
keys, read with the types the requested views declare (a String key ``001`` stays
``"001"``). The ``event_timestamp`` column becomes ``timestamp[us, tz=UTC]``: naive times
are read as UTC, ISO-8601 strings are parsed, and a value that does not parse or lies
outside the accepted time range (``types.MIN_TIME`` .. ``types.MAX_TIME``) is an error
naming its row.

Refused with a one-line ``RetrievalError``: duplicate column names, an object column
mixing value types, a file that cannot be read. (Key columns are checked by the join plan
with ``types.dtype_from_arrow``: a ``uint64`` key column is refused, as it cannot be read
losslessly as Int64; an integer column of an Int32 key holding a value beyond Int32's
range is refused here, naming the row, as the online read refuses it.)

**Entity SQL runs with the engine's full access.** On DuckDB, a query string runs in the
process's DuckDB, which can read (and, through ``COPY``, write) any file the process can:
pass SQL only from trusted code, and never build it from untrusted input such as an HTTP
request. On BigQuery it runs with the client's credentials.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.errors import RetrievalError
from featurestore.offline.plan import ENTITY_TIMESTAMP, JoinPlan
from featurestore.types import MAX_TIME, MIN_TIME, DType, Int32, coerce, parse_iso_times

if TYPE_CHECKING:
    import pyarrow as pa

EntityInput = Any  # pandas.DataFrame | pyarrow.Table | str | os.PathLike (kept lazy)
RunSQL = Callable[[str], "pa.Table"]
ROW = "__fs_row"  # the entity row's identity in a probe table: its position
T = "__fs_t"  # the entity row's time in a probe table


def is_path(value: Any) -> bool:
    """Whether ``entity_df`` names a file or folder (a string that is not, is SQL)."""
    if isinstance(value, os.PathLike):
        return True
    if not isinstance(value, str):
        return False
    return value.endswith((".parquet", ".csv")) or (
        "\n" not in value and " " not in value.strip() and Path(value).exists()
    )


def read_entities(
    entity_df: EntityInput,
    key_dtypes: Mapping[str, DType],
    run_sql: RunSQL | None = None,
) -> pa.Table:
    """Read ``entity_df`` into Arrow with ``event_timestamp`` as UTC microseconds.

    ``key_dtypes`` types a CSV file's join-key columns; ``run_sql`` runs a SQL string
    (None: SQL is refused). Raises ``RetrievalError`` naming the problem (module docstring).
    """
    import pyarrow as pa

    if entity_df is None:
        raise RetrievalError("entity_df is required: the rows (keys + event_timestamp) to join")
    if isinstance(entity_df, pa.Table):
        table = entity_df
    elif is_path(entity_df):
        table = _read_file(Path(entity_df), key_dtypes)
    elif isinstance(entity_df, str):
        if run_sql is None:
            raise RetrievalError("entity_df as SQL needs an engine that runs SQL")
        table = run_sql(entity_df)
    elif hasattr(entity_df, "to_parquet") and hasattr(entity_df, "columns"):
        table = _from_pandas(entity_df)
    else:
        raise RetrievalError(
            "entity_df must be a pandas DataFrame, a pyarrow Table, a Parquet or CSV path, a "
            f"folder of Parquet files or a SQL query, got {type(entity_df).__name__}"
        )
    _check_unique_names(table.column_names, "entity_df")
    # pandas' schema metadata would make .to_df() restore the caller's dtypes (a Paris time
    # zone, nanoseconds) over the training set's UTC microseconds: the output is ours.
    table = table.replace_schema_metadata(None)
    table = table.combine_chunks() if table.num_rows else table
    _check_int32_keys(table, key_dtypes)
    return normalize_timestamps(table)


def _check_int32_keys(table: pa.Table, key_dtypes: Mapping[str, DType]) -> None:
    """An integer column of an Int32 join key holds only Int32 values: a key beyond that
    range is of the wrong type (``types.coerce``, the online read's rule too), not a key
    that matches no row (it silently gave nulls while the online read refused it)."""
    import pyarrow.types as pt

    for name, dtype in key_dtypes.items():
        if dtype is Int32 and name in table.column_names and pt.is_integer(table[name].type):
            coerce(table[name], dtype, f"entity_df join key {name!r}", RetrievalError)


def _check_unique_names(names: list[str], what: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RetrievalError(
            f"{what} has duplicate column names {repeated}: give every column its own name"
        )


def _from_pandas(frame: Any) -> pa.Table:
    import pyarrow as pa

    _check_unique_names([str(c) for c in frame.columns], "entity_df")
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        for name in frame.columns:
            try:
                pa.array(frame[name], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                kinds = sorted({type(v).__name__ for v in frame[name] if v is not None})
                raise RetrievalError(
                    f"entity_df column {name!r} mixes value types ({', '.join(kinds)}) in one "
                    "object column: convert it to one type (keys are typed: 1 and '1' differ)"
                ) from None
        raise


def _read_file(path: Path, key_dtypes: Mapping[str, DType]) -> pa.Table:
    import pyarrow as pa

    if not path.exists():
        raise RetrievalError(f"entity_df: no file or folder at {path}")
    try:
        if path.is_dir():
            return _read_folder(path)
        if path.suffix.lower() == ".csv":
            return _read_csv(path, key_dtypes)
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        kind = "CSV" if path.suffix.lower() == ".csv" else "Parquet"
        raise RetrievalError(f"entity_df: cannot read {path} as {kind}: {exc}") from None


def _read_folder(path: Path) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featurestore.sources import folder_files

    files = folder_files(path)
    if not files:
        raise RetrievalError(f"entity_df: folder {path} holds no .parquet file")
    tables = [pq.read_table(f) for f in files]

    def columns(table: pa.Table) -> str:
        return ", ".join(f"{f.name} {f.type}" for f in table.schema)

    for file, table in zip(files[1:], tables[1:], strict=True):
        if table.schema.remove_metadata() != tables[0].schema.remove_metadata():
            raise RetrievalError(
                f"entity_df: {file} has columns ({columns(table)}) but {files[0]} has "
                f"({columns(tables[0])}); every file of the folder needs the same columns"
            )
    return pa.concat_tables([t.replace_schema_metadata(None) for t in tables])


def _read_csv(path: Path, key_dtypes: Mapping[str, DType]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as csv

    # Keys are read as declared; everything else as inferred (times are parsed later).
    types = {k: pa.string() if d.name == "String" else pa.int64() for k, d in key_dtypes.items()}
    return csv.read_csv(path, convert_options=csv.ConvertOptions(column_types=types))


def normalize_timestamps(table: pa.Table) -> pa.Table:
    """Return ``table`` with ``event_timestamp`` as ``timestamp[us, tz=UTC]``, range-checked.

    A table without the column, or with a type that is not a time, is returned as is: the
    join plan reports it, naming the views that need it.
    """
    import pyarrow as pa
    import pyarrow.types as pt

    if ENTITY_TIMESTAMP not in table.column_names:
        return table
    column = table[ENTITY_TIMESTAMP]
    utc = pa.timestamp("us", tz="UTC")
    if pt.is_string(column.type) or pt.is_large_string(column.type):
        what = f"entity_df column {ENTITY_TIMESTAMP!r}"
        column = pa.chunked_array([parse_iso_times(column, what, RetrievalError)])
    if pt.is_timestamp(column.type):  # parsed strings too: one rounding rule
        # Arrow stores instants as UTC already: re-labelling a naive column reads it as UTC.
        naive = column.cast(pa.timestamp(column.type.unit), safe=False)
        converted = _nearest_us(naive).cast(utc)
    elif pt.is_date(column.type) or pt.is_null(column.type):
        converted = column.cast(pa.timestamp("us")).cast(utc)
    else:
        return table
    _check_time_range(converted)
    index = table.column_names.index(ENTITY_TIMESTAMP)
    return table.set_column(index, ENTITY_TIMESTAMP, converted)


def _nearest_us(times: pa.ChunkedArray) -> pa.ChunkedArray:
    """Naive times as microseconds, a finer time rounded to the nearest one (half away from
    zero) as DuckDB rounds the sources' times when it reads them: an entity row taken from
    the same nanosecond time as a source row keeps that row's time, so the join finds it
    (truncating the entity time put a row whose ns part is 500 or more after it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if times.type.unit != "ns":
        return times.cast(pa.timestamp("us"))  # exact
    ns = times.cast(pa.int64())
    us = pc.divide(pc.add(ns, pc.multiply(pc.sign(ns), 500)), 1000)  # integer: truncates
    return us.cast(pa.timestamp("us"))


def _outside_range(row: int, value: object) -> RetrievalError:
    return RetrievalError(
        f"entity_df column {ENTITY_TIMESTAMP!r}: row {row} holds {value}, outside the "
        f"accepted time range {MIN_TIME.isoformat()} .. {MAX_TIME.isoformat()}"
    )


def _check_time_range(times: pa.ChunkedArray) -> None:
    """Every entity time lies within the accepted range (so ``t - ttl`` and ``.to_df()``
    never overflow); the first row outside it is named."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(times):
        return
    lo, hi = (pa.scalar(t, pa.timestamp("us", tz="UTC")) for t in (MIN_TIME, MAX_TIME))
    outside = pc.or_(pc.less(times, lo), pc.greater(times, hi))
    if pc.any(outside).as_py():
        row = pc.index(outside, True).as_py()
        raise _outside_range(row, times[row].as_py().isoformat())


def probe_table(plan: JoinPlan, entities: pa.Table) -> pa.Table:
    """The narrow table an engine joins: ``__fs_row`` (the row's position: its identity,
    never its keys), every join key as int64 (every integer width compares equal) or
    string, and ``__fs_t``, the entity time."""
    import numpy as np
    import pyarrow as pa

    columns = {ROW: pa.array(np.arange(entities.num_rows, dtype=np.int64))}
    for name, dtype in plan.key_dtypes.items():
        target = pa.string() if dtype.name == "String" else pa.int64()
        columns[name] = entities[name].cast(target)
    columns[T] = entities[ENTITY_TIMESTAMP]
    return pa.table(columns)
