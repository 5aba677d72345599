"""Where a source's data lives and what columns it has; schema checks at ``apply``.

A view's declared fields and timestamp columns are checked against the source's actual
Parquet schema before anything is built, so schema skew fails early and names the column.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.definitions import FeatureView, FileSource, Source
from featurestore.errors import SchemaMismatchError
from featurestore.types import (
    DType,
    arrow_compatible,
    dtype_from_arrow,
    is_key_dtype,
    is_timestamp,
    key_dtype_names,
)

if TYPE_CHECKING:
    import pyarrow as pa


def source_path(source: FileSource, repo_path: Path) -> Path:
    """The source's path, resolved against the repo folder when relative."""
    path = Path(source.path).expanduser()
    return path if path.is_absolute() else repo_path / path


def parquet_files(source: FileSource, repo_path: Path) -> list[Path]:
    """The Parquet files a FileSource reads, in a stable order (a file, a folder or a glob)."""
    path = source_path(source, repo_path)
    if any(ch in source.path for ch in "*?["):
        files = sorted(Path(p) for p in path.parent.glob(path.name))
    elif path.is_dir():
        files = sorted(path.rglob("*.parquet"))
    else:
        files = [path] if path.exists() else []
    if not files:
        raise SchemaMismatchError(f"source {source.path!r}: no Parquet file at {path}")
    return files


def file_schema(source: FileSource, repo_path: Path) -> pa.Schema:
    """The Arrow schema of a FileSource's first file, which every other file must share.

    A later file may add columns, but each column of the first file must be in every file
    with a type of the same dtype: the engines read the files as one table.
    """
    import pyarrow.parquet as pq

    files = parquet_files(source, repo_path)
    schemas = []
    for file in files:
        try:
            schemas.append(pq.read_schema(file))
        except Exception as exc:  # pyarrow raises several types for unreadable files
            raise SchemaMismatchError(f"source {source.path!r}: cannot read {file}: {exc}") from exc
    first = schemas[0]
    for file, schema in zip(files[1:], schemas[1:], strict=True):
        for column in first:
            index = schema.get_field_index(column.name)
            other = None if index < 0 else schema.field(index).type
            if other is None or not _same_kind(column.type, other):
                raise SchemaMismatchError(
                    f"source {source.path!r}: column {column.name!r} is {column.type} in "
                    f"{files[0].name} but {other or 'missing'} in {file}; every file needs "
                    "the first file's columns with the same types"
                )
    return first


def _same_kind(a: pa.DataType, b: pa.DataType) -> bool:
    """Whether two files' column types read as the same dtype (int32 and int16 do)."""
    kind_a, kind_b = dtype_from_arrow(a), dtype_from_arrow(b)
    return kind_a == kind_b if kind_a is not None else a == b


def check_view_schema(view: FeatureView, schema: pa.Schema) -> dict[str, DType]:
    """Check a view against its source's schema; return every join key's dtype.

    Fails when a declared field, key or timestamp column is missing or has an incompatible
    type, naming the view, the column, what was expected and what was found.
    """
    source: Source = view.source
    where = f"feature view {view.name!r} (source {getattr(source, 'path', None) or source.table!r})"
    names = set(schema.names)

    def need(column: str, role: str) -> pa.DataType:
        if column not in names:
            raise SchemaMismatchError(
                f"{where}: {role} column {column!r} is missing from the source; "
                f"it has {sorted(names)}"
            )
        return schema.field(column).type

    for column, role in [
        (source.timestamp_field, "timestamp"),
        (source.created_timestamp_column, "created timestamp"),
    ]:
        if column is None:
            continue
        actual = need(column, role)
        if not is_timestamp(actual):
            raise SchemaMismatchError(
                f"{where}: {role} column {column!r} should be a timestamp but is {actual}"
            )
    for f in view.schema:
        actual = need(f.name, "declared")
        if not arrow_compatible(f.dtype, actual):
            raise SchemaMismatchError(
                f"{where}: column {f.name!r} is declared {f.dtype} but the source holds {actual}"
            )
    key_dtypes = dict(view.declared_key_dtypes)
    for key in view.join_keys:
        if key in key_dtypes:
            continue
        dtype = dtype_from_arrow(need(key, "join key"))
        if dtype is None or not is_key_dtype(dtype):
            raise SchemaMismatchError(
                f"{where}: join key {key!r} has type {schema.field(key).type}; "
                f"a join key must be one of {key_dtype_names()}"
            )
        key_dtypes[key] = dtype
    return key_dtypes
