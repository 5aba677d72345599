"""The entity rows of an online read (a list of dicts, or a dict of columns), checked and
turned into what the store call needs: the join-key columns (each value checked against the
key's dtype; errors name the column and row), each key group's entity keys, and the request
fields on-demand views read."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from featurestore.definitions import suggest
from featurestore.errors import RetrievalError
from featurestore.online.codec import (
    combine_keys,
    key_column,
)
from featurestore.types import INT_RANGES, DType

if TYPE_CHECKING:
    from featurestore.online.read import AggregatedRead, GroupRead, ReadPlan


EntityRows = Iterable[Mapping[str, Any]] | Mapping[str, Iterable[Any]]


def key_columns(plan: ReadPlan, entity_rows: EntityRows) -> tuple[int, dict[str, list[Any]]]:
    """The join-key columns of the request, checked, in the order the request gives them;
    RetrievalError names what is wrong."""
    if isinstance(entity_rows, Mapping):
        given = {name: _column(name, values) for name, values in entity_rows.items()}
        lengths = {len(v) for v in given.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k!r} has {len(v)}" for k, v in given.items())
            raise RetrievalError(
                f"entity columns have different lengths ({sizes}): give every join key one "
                "value per entity row"
            )
        n = lengths.pop() if lengths else 0
        columns = {}
        for name, _ in plan.join_keys:
            if name not in given:
                raise RetrievalError(_missing_key(name, list(given), None))
            columns[name] = given[name]
        order = list(given)
    else:
        rows = _listed(entity_rows, _rows_message(entity_rows))
        n = len(rows)
        columns = {name: [None] * n for name, _ in plan.join_keys}
        for i, row in enumerate(rows):
            for name, _ in plan.join_keys:
                try:
                    columns[name][i] = row[name]
                except KeyError:
                    raise RetrievalError(_missing_key(name, list(row), i)) from None
                except (TypeError, IndexError):
                    raise RetrievalError(
                        f"entity row {i} is {type(row).__name__}, not a mapping of join keys"
                    ) from None
        order = list(rows[0]) if rows else list(columns)
    for name, dtype in plan.join_keys:
        _check_key_types(name, dtype, columns[name])
    # in the order the caller gave them (rows: the first row's), as Feast answers them
    return n, {name: columns[name] for name in order if name in columns}


def _rows_message(entity_rows: Any) -> str:
    return (
        "entity_rows must be a list of mappings ([{'<join key>': value}, ...]) or a "
        f"mapping of columns ({{'<join key>': [values]}}), not {type(entity_rows).__name__}"
    )


def _column(name: str, values: Any) -> list[Any]:
    """One entity column as a list: any iterable of values, but not a single value."""
    return _listed(
        values,
        f"entity column {name!r} must be a list of values, one per entity row, not "
        f"{type(values).__name__} {values!r:.40}; for one row write {{{name!r}: [value]}}",
    )


def _listed(values: Any, message: str) -> list[Any]:
    """``values`` as a list (lists, tuples, arrays, generators...); a scalar, a string or a
    mapping is a RetrievalError with ``message``."""
    if isinstance(values, list):
        return values
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise RetrievalError(message)
    try:
        return list(values)
    except TypeError:  # e.g. a 0-d numpy array: iterable by type, not in fact
        raise RetrievalError(message) from None


def _missing_key(name: str, present: list[str], row: int | None) -> str:
    where = "the entity columns have" if row is None else f"entity row {row} has"
    return (
        f"{where} no join key {name!r} (the requested features need it); "
        f"found {present}{suggest(name, present)}"
    )


def _check_key_types(name: str, dtype: DType, values: list[Any]) -> None:
    """Join keys are typed: an int key needs ints (not bools or strings) its dtype can hold,
    a string key str."""
    want: type = str if dtype.name == "String" else int
    low, high = INT_RANGES.get(dtype.name, (0, 0))
    for i, v in enumerate(values):
        if want is int:
            if type(v) is int and low <= v <= high:
                continue
        elif type(v) is str and _is_utf8(v):
            continue
        if want is str and isinstance(v, str) and _is_utf8(v):
            values[i] = str(v)
            continue
        if want is int and not isinstance(v, bool | str | bytes):
            try:
                values[i] = operator.index(v)  # numpy integers and the like
                if low <= values[i] <= high:
                    continue
                raise RetrievalError(
                    f"entity row {i}: join key {name!r} is {dtype.name}, and {v!r} is outside "
                    f"its range {low} .. {high}"
                )
            except TypeError:
                pass
        raise RetrievalError(
            f"entity row {i}: join key {name!r} is {dtype.name} ({want.__name__}), got "
            f"{v!r} ({type(v).__name__}); keys are typed, so 1 and '1' are different keys"
        )


def _is_utf8(text: str) -> bool:
    """False for text UTF-8 cannot encode (a lone surrogate, as JSON's "\\ud800" decodes)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def entity_keys(group: GroupRead | AggregatedRead, columns: dict[str, list[Any]]) -> list[str]:
    """The codec's canonical entity key of every entity row, for one group's join keys."""
    return combine_keys([key_column(name, dtype, columns[name]) for name, dtype in group.keys])


def request_columns(plan: ReadPlan, entity_rows: EntityRows, n: int) -> dict[str, list[Any]]:
    """The request fields the plan's transformations read, from the entity rows (as given:
    ``transforms.transform`` casts them); RetrievalError names a missing one and its view."""
    found: dict[str, list[Any]] = {}
    for t in plan.transformations:
        for field in t.request_fields:
            name = field.column
            if name in found:
                continue
            if isinstance(entity_rows, Mapping):
                if name not in entity_rows:
                    raise RetrievalError(_missing_field(t.view, name, list(entity_rows), None))
                found[name] = _column(name, entity_rows[name])
                continue
            values = []
            for i, row in enumerate(entity_rows):  # a list: _requests made it one
                if name not in row:
                    raise RetrievalError(_missing_field(t.view, name, list(row), i))
                values.append(row[name])
            found[name] = values
    for name, values in found.items():
        if len(values) != n:
            raise RetrievalError(
                f"request field {name!r} has {len(values)} values for {n} entity rows: give "
                "one per entity row"
            )
    return found


def _missing_field(view: str, name: str, present: list[str], row: int | None) -> str:
    where = "the entity columns have" if row is None else f"entity row {row} has"
    return (
        f"{where} no request field {name!r}, which on-demand feature view {view!r} needs "
        f"(give it beside the join keys); found {present}{suggest(name, present)}"
    )


def listed_rows(entity_rows: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Row-shaped entity rows as a list (an iterator can then be read twice)."""
    return _listed(entity_rows, _rows_message(entity_rows))
