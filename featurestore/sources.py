"""Where a source's data lives and what columns it has; the one schema check.

A view's declared fields, join keys and timestamp columns are checked against the source's
actual columns before anything is built (at ``apply``, and by the DuckDB engine before each
read, which catches a source changed since), so schema skew fails early and names the
column. The check is one function, ``check_columns``, parameterized by an engine's
``TypeRule``: Arrow types here, BigQuery's in ``offline/bigquery/schema.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from featurestore.columns import same_name
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


PUSHED_FOLDER = "_pushed"
PUSHED_SUFFIX = ".pushed"


def push_folder(source: FileSource, repo_path: Path) -> Path:
    """Where rows pushed into ``source`` are stored (featurestore/push.py): the folder
    ``_pushed`` inside a folder source; for a single-file source, the companion folder
    ``<file>.pushed`` beside it (e.g. ``data/driver_stats.parquet.pushed/``). A glob source
    takes no pushes (``PushSource`` refuses it)."""
    path = source_path(source, repo_path)
    if path.is_dir():
        return path / PUSHED_FOLDER
    return path.with_name(path.name + PUSHED_SUFFIX)


def parquet_files(source: FileSource, repo_path: Path) -> list[Path]:
    """The Parquet files a FileSource reads, in tie-break order (a later file wins a
    complete tie): the one place that decides it.

    A file; a folder's files (all sub-folders, but not hidden or underscored ones:
    ``folder_files``), sorted by path; or a glob's matches, sorted.
    Then, for a file or a folder, the pushed files (``pushed_files``), in push order: pushed
    rows come after the source's own rows, and a later push after an earlier one.
    """
    path = source_path(source, repo_path)
    if any(ch in source.path for ch in "*?["):
        files = sorted(Path(p) for p in path.parent.glob(path.name))
    else:
        pushed = push_folder(source, repo_path)
        # a folder's files never include "_pushed": its files come next
        files = folder_files(path) if path.is_dir() else [path] if path.exists() else []
        files += pushed_files(pushed)
    if not files:
        raise SchemaMismatchError(f"source {source.path!r}: no Parquet file at {path}")
    return files


def folder_files(folder: Path) -> list[Path]:
    """A folder's Parquet files (sub-folders included), sorted by path, without the files
    and folders whose name starts with "." or "_": by Spark's, Hive's and Arrow's convention
    they are not data (a writer's temporary files, ``_temporary/`` attempts, ``_SUCCESS``
    markers), and reading them would add rows no committed write holds."""
    return sorted(
        p
        for p in folder.rglob("*.parquet")
        if p.is_file()
        and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
    )


def pushed_files(folder: Path) -> list[Path]:
    """A push folder's files in push order: sorted by name (``push-<sequence>-...``, the
    sequence zero-padded), without files whose name starts with "." (being written) and
    without files a merged file holds (featurestore/compaction.py: ``push-<last>-merged-
    <first>.parquet`` holds the pushes ``first`` to ``last``, so while a compaction runs the
    merged rows are read once, from it)."""
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("[!.]*.parquet"))
    spans = [push_span(path.name) for path in files]
    merged = [span for span in spans if span is not None and span[0] < span[1]]
    return [
        path
        for path, span in zip(files, spans, strict=True)
        if span is None
        or not any(
            first <= span[0] and span[1] <= last and span != (first, last) for first, last in merged
        )
    ]


def push_span(name: str) -> tuple[int, int] | None:
    """The pushes a pushed file holds, ``(first, last)`` sequence numbers (None: not a
    pushed file's name)."""
    parts = name.removesuffix(".parquet").split("-")
    if len(parts) < 3 or parts[0] != "push" or not parts[1].isdigit():
        return None
    last = int(parts[1])
    if parts[2] == "merged" and len(parts) == 4 and parts[3].isdigit():
        return int(parts[3]), last
    return last, last


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


# --- the apply-time schema check, parameterized by an engine's type rule ----------------

T = TypeVar("T")


@dataclass(frozen=True)
class TypeRule(Generic[T]):
    """How one engine's source column types (``T``) relate to our dtypes: the parameter of
    the one schema check. ``ARROW_TYPES`` (Parquet files) is below; BigQuery's, on its
    ``SchemaField`` (only 64-bit numbers, TIMESTAMP-only times, REPEATED fields), is
    ``offline/bigquery/schema.py``'s ``BIGQUERY_TYPES``."""

    describe: Callable[[T], str]  # a type as the user knows it, for messages
    is_timestamp: Callable[[T], bool]  # may serve as an event or created timestamp
    compatible: Callable[[DType, T], bool]  # can be read losslessly as the declared dtype
    key_dtype: Callable[[T], DType | None]  # the dtype an undeclared join key gets, or None
    value_dtype: Callable[[T], DType | None]  # the dtype an undeclared aggregated column gets
    timestamp_type: str  # what a timestamp column must be, for messages
    key_types: str  # what a join key may be, for messages
    unusable: Callable[[T], str | None] = lambda _: None  # why no column may have this type
    timestamp_hint: str = ""  # how to fix a timestamp column of another type


def _arrow_key_dtype(arrow_type: pa.DataType) -> DType | None:
    dtype = dtype_from_arrow(arrow_type)
    return dtype if dtype is not None and is_key_dtype(dtype) else None


ARROW_TYPES: TypeRule[pa.DataType] = TypeRule(
    describe=str,
    is_timestamp=is_timestamp,
    compatible=arrow_compatible,
    key_dtype=_arrow_key_dtype,
    value_dtype=dtype_from_arrow,
    timestamp_type="a timestamp",
    key_types=key_dtype_names(),
)


def check_columns(
    where: str,
    columns: Mapping[str, T],
    rule: TypeRule[T],
    *,
    timestamps: Sequence[tuple[str | None, str]],
    declared: Sequence[tuple[str, DType]],
    inferred_keys: Sequence[str] = (),
    inferred_values: Sequence[str] = (),
) -> dict[str, DType]:
    """Check a source's ``columns`` (name -> the engine's type) against what a view needs.

    ``timestamps``: (column or None, role) that must be timestamps; ``declared``: columns
    that must be readable as their dtype (``rule.compatible``); ``inferred_keys``: join keys
    without a declared dtype, which get one from their column (``rule.key_dtype``);
    ``inferred_values``: aggregated columns without a declared dtype (``rule.value_dtype``).
    Returns the inferred dtypes. ``SchemaMismatchError`` names ``where``, the column, what
    was expected and found.
    """

    def need(column: str, role: str) -> T:
        if column not in columns:
            raise SchemaMismatchError(
                f"{where}: {role} column {column!r} is missing from the source; "
                f"it has {sorted(columns)}"
            )
        twins = sorted(c for c in columns if same_name(c, column))
        if len(twins) > 1:  # the engines' SQL names columns case-insensitively
            raise SchemaMismatchError(
                f"{where}: source columns {twins} differ only in case, and the engines' SQL "
                f"cannot tell them apart (it could read another for {column!r}); rename one "
                "in the source"
            )
        problem = rule.unusable(columns[column])
        if problem is not None:
            raise SchemaMismatchError(f"{where}: column {column!r} {problem}")
        return columns[column]

    for column, role in timestamps:
        if column is None:
            continue
        actual = need(column, role)
        if not rule.is_timestamp(actual):
            raise SchemaMismatchError(
                f"{where}: {role} column {column!r} should be {rule.timestamp_type} but is "
                f"{rule.describe(actual)}{rule.timestamp_hint}"
            )
    for name, dtype in declared:
        actual = need(name, "declared")
        if not rule.compatible(dtype, actual):
            raise SchemaMismatchError(
                f"{where}: column {name!r} is declared {dtype} but the source holds "
                f"{rule.describe(actual)}"
            )
    inferred = {}
    for key in inferred_keys:
        actual = need(key, "join key")
        key_dtype = rule.key_dtype(actual)
        if key_dtype is None:
            raise SchemaMismatchError(
                f"{where}: join key {key!r} has type {rule.describe(actual)}; "
                f"a join key must be one of {rule.key_types}"
            )
        inferred[key] = key_dtype
    for name in inferred_values:
        actual = need(name, "aggregated")
        value_dtype = rule.value_dtype(actual)
        if value_dtype is None:
            raise SchemaMismatchError(
                f"{where}: aggregated column {name!r} has type {rule.describe(actual)}, which "
                "no feature dtype holds"
            )
        inferred[name] = value_dtype
    return inferred


def check_view_columns(
    view: FeatureView, columns: Mapping[str, T], rule: TypeRule[T]
) -> dict[str, DType]:
    """Check a view against its source's columns under an engine's type ``rule``; return
    every join key's dtype (declared by a ``Field``, else read from the source) and, of an
    aggregated view, every aggregated column's dtype not declared by a ``Field``.

    Fails when a declared field, key, aggregated or timestamp column is missing or has an
    incompatible type, naming the view, the column, what was expected and what was found.
    """
    source: Source = view.batch_source
    if isinstance(source, FileSource):
        where = f"feature view {view.name!r} (source {source.path!r})"
    else:
        where = f"feature view {view.name!r} (BigQuery source {source.table or 'query'!r})"
    key_dtypes = dict(view.declared_key_dtypes)
    fields = {f.name for f in view.schema}
    typed_keys = [(k, d) for k, d in key_dtypes.items() if k not in fields]  # value_type
    key_dtypes.update(
        check_columns(
            where,
            columns,
            rule,
            timestamps=[
                (source.timestamp_field, "timestamp"),
                (source.created_timestamp_column, "created timestamp"),
            ],
            declared=[(f.name, f.dtype) for f in view.schema] + typed_keys,
            inferred_keys=[k for k in view.join_keys if k not in key_dtypes],
            inferred_values=undeclared_columns(view),
        )
    )
    return key_dtypes


def undeclared_columns(view: FeatureView) -> list[str]:
    """An aggregated view's aggregated columns without a declaring ``Field``, in first use."""
    declared = view.column_dtypes
    found: dict[str, None] = {}
    for agg in view.aggregations:
        if agg.column not in declared:
            found[agg.column] = None
    return list(found)


def complete_view(
    view: FeatureView, dtypes: Mapping[str, DType]
) -> tuple[FeatureView, dict[str, DType]]:
    """Split ``check_view_columns``' answer into the join keys' dtypes and, for an aggregated
    view, the view with a ``Field`` declaring each aggregated column (what the registry
    stores), each checked against its functions (``DefinitionError`` naming it)."""
    import dataclasses

    from featurestore.definitions import Field

    keys = {k: dtypes[k] for k in view.join_keys}
    if not view.aggregations:
        return view, keys
    unknown = [c for c in undeclared_columns(view) if c not in dtypes]
    if unknown:
        raise SchemaMismatchError(
            f"feature view {view.name!r}: the source's schema could not be read, so declare "
            f"the dtype of aggregated column(s) {unknown} with a Field in the schema"
        )
    added = [Field(name=c, dtype=dtypes[c]) for c in undeclared_columns(view)]
    completed = dataclasses.replace(view, schema=[*view.schema, *added]) if added else view
    column_dtypes = completed.column_dtypes
    for agg in view.aggregations:
        agg.check_dtype(column_dtypes[agg.column], view.name)
    return completed, keys


def check_view_schema(view: FeatureView, schema: pa.Schema) -> dict[str, DType]:
    """``check_view_columns`` for a Parquet source's Arrow ``schema``."""
    return check_view_columns(view, {f.name: f.type for f in schema}, ARROW_TYPES)
