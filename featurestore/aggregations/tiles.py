"""Tiles from events: every partial a tile holds is the pairwise merge of its events.

Both paths compute tiles here, from the same events in the same order (the point-in-time
join's: event time, created time with a missing one oldest, then source position): offline
for every tile and head a training set needs, and materialization for every tile a run
touches. ``reduce_segments`` merges each segment's partials as a balanced tree (pairs of
neighbours, then pairs of pairs, ...): its shape depends only on the segment's length, so
one segment always gives the same bits, and it runs in ``log2(longest)`` vectorized rounds
however the events are spread over keys and tiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from featurestore.aggregations.partials import NUMPY, Layout, merge

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

Arrays = dict[str, "np.ndarray"]


def event_partials(layout: Layout, columns: Mapping[str, pa.ChunkedArray | pa.Array]) -> Arrays:
    """One partial per event, from the events' value columns (by source column name).

    ``last`` holds the event's index (its position in ``columns``): the value is taken from
    the column at the end (``take_last``), whatever its type.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = None
    out: Arrays = {}
    for column in layout.columns:
        array = columns[column.name]
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        n = len(array)
        valid = ~np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        out[column.field("n")] = valid.astype(np.int64)
        kinds = column.kinds
        numeric = {"sum", "mean", "m2", "min", "max"} & set(kinds)
        if numeric:
            if column.dtype.name == "UnixTimestamp":
                values = pc.fill_null(array.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), 0)
                as_number = values.to_numpy(zero_copy_only=False).astype(np.int64)
            elif column.is_float:
                as_number = pc.fill_null(array.cast(pa.float64()), 0.0).to_numpy(
                    zero_copy_only=False
                )
            else:
                as_number = pc.fill_null(array.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
            # one array serves every field holding the value itself: nothing writes to it
            shared = np.ascontiguousarray(as_number)
            for kind in ("sum", "min", "max"):
                if kind in kinds:
                    out[column.field(kind)] = shared
            if "wraps" in kinds:  # one value never wrapped
                out[column.field("wraps")] = np.zeros(n, dtype=np.int64)
            if "mean" in kinds:
                out[column.field("mean")] = shared if column.is_float else shared.astype(np.float64)
            if "m2" in kinds:
                out[column.field("m2")] = np.zeros(n, dtype=np.float64)
        if "last" in kinds:
            out[column.field("last")] = np.arange(n, dtype=np.int64)
    if n is None:
        raise ValueError("a layout without columns has no event partials to build")
    out["count"] = np.ones(n, dtype=np.int64)
    return out


def counts_only(n: int) -> Arrays:
    """Event partials of a layout without columns (only ``count``)."""
    import numpy as np

    return {"count": np.ones(n, dtype=np.int64)}


def take(arrays: Mapping[str, np.ndarray], index: Any) -> Arrays:
    """Every field at ``index`` (an index array or a slice)."""
    import numpy as np

    if isinstance(index, slice):
        return {name: values[index] for name, values in arrays.items()}
    # np.take, not values[index]: the same elements, faster (fresh arrays, numpy 2.x)
    return {name: np.take(values, index) for name, values in arrays.items()}


def reduce_segments(
    layout: Layout,
    partials: Mapping[str, np.ndarray],
    starts: np.ndarray,
    index: np.ndarray | None = None,
) -> Arrays:
    """One partial per segment: segment ``i`` is ``partials[starts[i]:starts[i + 1]]`` (the
    last runs to the end), ``starts`` ascending and the first 0. Each segment is merged as
    a balanced tree: neighbours (0, 1), (2, 3), ... first, then the results pairwise, the odd
    one out carried up unchanged. With ``index``, the segments are of ``index`` (positions in
    ``partials``), which spares copying ``partials`` first."""
    import numpy as np

    total = len(partials["count"]) if index is None else len(index)
    starts = np.asarray(starts, dtype=np.int64)
    if total == 0:
        return take(partials, starts[:0])
    lengths = np.diff(np.append(starts, total))
    at = starts if index is None else index[starts]
    out = take(partials, at)  # single-event segments are done already
    active = np.flatnonzero(lengths > 1)
    if len(active) == 0:
        return out
    # work only on the segments of several events, compacted; per member, its segment
    # (position in ``out``), its rank in the segment and the segment's length
    seg_lengths = lengths[active]
    members = _ranges(starts[active], seg_lengths)
    current = take(partials, members if index is None else index[members])
    segment = np.repeat(active, seg_lengths)
    rank = members - np.repeat(starts[active], seg_lengths)
    length = np.repeat(seg_lengths, seg_lengths)
    with np.errstate(all="ignore"):
        while len(rank):
            keep = np.flatnonzero((rank & 1) == 0)
            left = keep[rank[keep] + 1 < length[keep]]
            merged = merge(layout, take(current, left), take(current, left + 1), NUMPY)
            for name in current:
                current[name][left] = merged[name]
            # the kept ones: rank halves, the segment's length halves (rounded up); a
            # segment down to one member is done
            length = (length[keep] + 1) // 2
            done, going = keep[length == 1], keep[length > 1]
            for name in out:
                out[name][segment[done]] = current[name][done]
            rank, length, segment = rank[going] // 2, length[length > 1], segment[going]
            current = take(current, going)
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(s, s + n)`` for every (s, n), vectorized."""
    import numpy as np

    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets
