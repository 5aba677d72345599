"""Output column names: one rule for training sets and online responses, and one clash check.

A feature is output as ``feature``, or as ``view__feature`` with ``full_feature_names=True``.
A training set asked for its winners' timestamps (``with_timestamps=True``) also gets, per
view, ``view__event_ts`` and ``view__created_ts`` (whatever ``full_feature_names`` says).
Two outputs under one name are an error naming both, raised before any data is read: the
offline join plan (``offline/plan.py``) and the online read plan (``online/read.py``) both
call ``check_unique``, so a request is refused alike on both paths.

Names that differ only in case are one name to the offline engines' SQL (DuckDB binds
columns case-insensitively, BigQuery refuses a result with both), so ``sql_name`` is the
one rule every check of column names uses: two outputs, two join keys of a request, two
columns a view reads, a column and its twin in a source.
"""

from __future__ import annotations

from collections.abc import Iterable

from featurestore.errors import RetrievalError

ENTITY_TIMESTAMP = "event_timestamp"
"""The entity rows' time column (training sets, batch scoring): no join key may be named so."""

EVENT_TS_SUFFIX = "__event_ts"
CREATED_TS_SUFFIX = "__created_ts"

EVENT_TS = "__fs_event_ts"
CREATED_TS = "__fs_created_ts"
"""The columns of a row's event and created times in the rows written online (read by
materialization, given by a push): reserved names (``definitions.RESERVED_PREFIX``), so a
feature may be called ``event_ts`` or ``created_ts``."""


def feature_column(view: str, feature: str, full_feature_names: bool) -> str:
    """The output column of feature ``view:feature``."""
    return f"{view}__{feature}" if full_feature_names else feature


def timestamp_columns(view: str) -> tuple[str, str]:
    """The output columns of a view's winning row's event and created timestamps."""
    return f"{view}{EVENT_TS_SUFFIX}", f"{view}{CREATED_TS_SUFFIX}"


def sql_name(name: str) -> str:
    """A column name as the offline engines' SQL compares it: without case."""
    return name.lower()


def same_name(a: str, b: str) -> bool:
    """Whether two column names are one to SQL (``sql_name``): equal but for case."""
    return sql_name(a) == sql_name(b)


def check_unique(columns: Iterable[tuple[str, str]], full_feature_names: bool) -> None:
    """Refuse two outputs under one column name, or names differing only in case
    (``same_name``: BigQuery cannot return both, so DuckDB does not either).

    ``columns`` holds ``(output column, what it is)`` in output order, e.g.
    ``("user_id", "entity_df column 'user_id'")`` or ``("x", "feature 'v:x'")``. Raises
    ``RetrievalError`` naming both owners and, when feature names are short, the fix.
    """
    owners: dict[str, tuple[str, str]] = {}
    for name, owner in columns:
        first = owners.get(sql_name(name))
        if first is None:
            owners[sql_name(name)] = (name, owner)
            continue
        hint = (
            ""
            if full_feature_names
            else "; pass full_feature_names=True to name feature columns 'view__feature'"
        )
        first_name, first_owner = first
        where = (
            f"column {name!r}"
            if first_name == name
            else f"columns {first_name!r} and {name!r}, which differ only in case (one column "
            "to the offline engines' SQL)"
        )
        raise RetrievalError(f"{first_owner} and {owner} would both be output as {where}{hint}")
