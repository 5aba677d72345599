"""Comparing aggregations when an integer sum may overflow: one window whose total leaves
Int64 fails the whole call that asks for its sum (online: the request; offline: the
training set), so ``each_answered`` asks for every reference at once and, only when that
fails on such an overflow, for each alone. The failing ones must then fail on both sides
being compared, and every other aggregation is still compared."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from featurestore.errors import RetrievalError

T = TypeVar("T")


def each_answered(read: Callable[[list[str]], T], refs: Sequence[str]) -> dict[str, T | None]:
    """Per reference, the answer of a ``read`` that asked for it (``read(refs)`` when that
    succeeds, else ``read([ref])``), or None when asking for it fails on an Int64 sum
    overflow; any other error is raised."""
    try:
        return dict.fromkeys(refs, read(list(refs)))
    except RetrievalError as exc:
        if "overflows Int64" not in str(exc):
            raise
    out: dict[str, T | None] = {}
    for ref in refs:
        try:
            out[ref] = read([ref])
        except RetrievalError as exc:
            if "overflows Int64" not in str(exc):
                raise
            out[ref] = None
    return out
