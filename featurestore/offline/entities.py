"""The entity table of a training-set request, as Arrow, with UTC microsecond timestamps.

``entity_df`` may be a pandas DataFrame, a pyarrow Table, a Parquet path, or a SQL query
string run on the offline engine (DuckDB here). Its ``event_timestamp`` column becomes
``timestamp[us, tz=UTC]``: naive times are read as UTC, ISO-8601 strings are parsed, and
a value that does not parse is an error naming its row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.errors import RetrievalError
from featurestore.offline.plan import ENTITY_TIMESTAMP

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

EntityInput = Any  # pandas.DataFrame | pyarrow.Table | str | os.PathLike (kept lazy)


def looks_like_path(value: str) -> bool:
    return value.endswith(".parquet") or (
        "\n" not in value and " " not in value.strip() and Path(value).exists()
    )


def load_entities(entity_df: EntityInput, con: duckdb.DuckDBPyConnection | None) -> pa.Table:
    """Read ``entity_df`` into an Arrow table (``con`` runs SQL strings; None forbids them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if entity_df is None:
        raise RetrievalError("entity_df is required: the rows (keys + event_timestamp) to join")
    if isinstance(entity_df, pa.Table):
        table = entity_df
    elif isinstance(entity_df, os.PathLike) or (
        isinstance(entity_df, str) and looks_like_path(entity_df)
    ):
        path = Path(entity_df)
        if not path.exists():
            raise RetrievalError(f"entity_df: no Parquet file at {path}")
        table = pq.read_table(path)
    elif isinstance(entity_df, str):
        if con is None:
            raise RetrievalError("entity_df as SQL needs an engine that runs SQL")
        try:
            table = con.sql(entity_df).to_arrow_table()
        except Exception as exc:  # DuckDB raises a family of errors for bad SQL
            raise RetrievalError(f"entity_df SQL failed: {exc}") from exc
    elif hasattr(entity_df, "to_parquet") and hasattr(entity_df, "columns"):
        table = pa.Table.from_pandas(entity_df, preserve_index=False)
    else:
        raise RetrievalError(
            "entity_df must be a pandas DataFrame, a pyarrow Table, a Parquet path or a SQL "
            f"query, got {type(entity_df).__name__}"
        )
    # pandas' schema metadata would make .to_df() restore the caller's dtypes (a Paris time
    # zone, nanoseconds) over the training set's UTC microseconds: the output is ours.
    table = table.replace_schema_metadata(None)
    return table.combine_chunks() if table.num_rows else table


def normalize_timestamps(table: pa.Table) -> pa.Table:
    """Return ``table`` with ``event_timestamp`` as ``timestamp[us, tz=UTC]``."""
    import pyarrow as pa
    import pyarrow.types as pt

    if ENTITY_TIMESTAMP not in table.column_names:
        return table  # the plan reports the missing column, naming the views
    column = table[ENTITY_TIMESTAMP]
    utc = pa.timestamp("us", tz="UTC")
    if pt.is_string(column.type) or pt.is_large_string(column.type):
        converted = _parse_strings(column)
    elif pt.is_timestamp(column.type):
        # Arrow stores instants as UTC already: re-labelling a naive column reads it as UTC.
        naive = column.cast(pa.timestamp(column.type.unit), safe=False)
        converted = naive.cast(pa.timestamp("us"), safe=False).cast(utc)
    elif pt.is_date(column.type) or pt.is_null(column.type):
        converted = column.cast(pa.timestamp("us")).cast(utc)
    else:
        return table  # the plan reports the wrong type
    index = table.column_names.index(ENTITY_TIMESTAMP)
    return table.set_column(index, ENTITY_TIMESTAMP, converted)


def _parse_strings(column: pa.ChunkedArray) -> pa.ChunkedArray:
    import pandas as pd
    import pyarrow as pa

    values = column.to_pandas()
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        for row, value in enumerate(values):
            if value is None or pd.isna(value):
                continue
            try:
                pd.to_datetime(value, utc=True, format="ISO8601")
            except (ValueError, TypeError):
                raise RetrievalError(
                    f"entity_df column {ENTITY_TIMESTAMP!r}: row {row} holds {value!r}, "
                    "which is not a timestamp; use ISO-8601 like '2024-05-01T12:00:00Z'"
                ) from None
        raise
    return pa.chunked_array([pa.array(parsed.astype("datetime64[us, UTC]"))])
