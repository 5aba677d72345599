"""Windowed aggregations for a training set: every entity row's values at its own time.

Input: the view's events of the requested keys, sorted by (key code, event time, created time
with a missing one oldest, source position) — the engine's job (``offline/duckdb_sql.py``,
``offline/bigquery/sql.py``), done inside the engine, never in pandas — and each entity row's
key code and time. Everything after that is numpy, in ``O(events + rows x pieces)``:

1. per tile level, the tiles: consecutive events of one (key, level tile), merged pairwise
   (``tiles.reduce_segments``: the function materialization uses for the tiles it stores);
2. per slide, each row's head ``[floor(t, S), t)``: the events of the slide tile before
   ``t``, merged the same way (what the stored tile holds when ``t`` is a run's end);
3. per (window, slide), each row's pieces (``windows.decompose``): the non-empty tiles of
   each range, counted between the event positions of its bounds (each distinct bound is
   one binary search among the events, whichever windows share it), folded left to right
   with ``partials.merge``, then the head; then ``partials.finalize``, the code an online
   read runs on the same pieces. Only the tiles some row reads are built.

Keys and times are packed into one int64 per (key, time) for the binary searches; when
``keys x time span`` does not fit, or there are many events, the work is cut into chunks
of whole keys (which also bounds memory).

``as_of="created"`` keeps, for each row, only the events created by ``t`` (a missing created
time counts as known). A row whose key has no event before ``t`` created after ``t`` knows
all its window's events and keeps the event path's value (``_late_rows`` finds the others
in one pass). For each other row, its pieces before the piece holding its first late event
are the shared tiles, the rest are merged from its own known events (``_late``): the same
trees over fewer events, so equal to the event path, bit for bit, wherever no event is
created after ``t``. That is work per (late row, event after its cut): small when events
are created soon after they happen, quadratic in a busy key's events when they are created
long after; such rows go in passes of about ``PAIRS_PER_PASS`` pairs, so memory stays
bounded.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featurestore.aggregations.partials import (
    NUMPY,
    Layout,
    SumOverflow,
    empty,
    finalize,
    merge,
)
from featurestore.aggregations.plan import AggSpec, ViewAggregations
from featurestore.aggregations.tiles import _ranges, event_partials, reduce_segments, take
from featurestore.aggregations.windows import DAY, NumpyOps, chain, decompose

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

Arrays = dict[str, "np.ndarray"]
MAX_PACKED = 2**62
CHUNK_EVENTS = 250_000  # events per chunk of keys: bounds memory, and arrays this small stay
# in cache and in the allocator's reused memory (1M: a quarter more CPU, half of it page faults)
THREADS = 2  # chunks computed at once
PAIRS_PER_PASS = 1_000_000  # as_of="created": (row, event) pairs held at once (~160 MB)


@dataclass
class Events:
    """A view's events, sorted by (code, event order): key codes, event times (µs), created
    times (µs, None when the source has none; a missing one as the smallest int64) and the
    aggregated columns' values."""

    code: np.ndarray
    ts: np.ndarray
    created: np.ndarray | None
    columns: Mapping[str, pa.Array]


@dataclass
class Rows:
    """Entity rows: key code (-1: a null key), time (µs) and whether the time is null."""

    code: np.ndarray
    t: np.ndarray
    null: np.ndarray


class AggregationOverflow(ArithmeticError):
    """An integer sum's window total does not fit in Int64 for some row: which view and
    column."""

    def __init__(self, view: str, column: str) -> None:
        super().__init__(f"{view}:{column}")
        self.view, self.column = view, column


def aggregate(
    plan: ViewAggregations,
    names: Sequence[str],
    events: Events,
    rows: Rows,
    as_of: str = "event",
) -> dict[str, pa.Array]:
    """The value of each aggregation in ``names`` for every entity row, as Arrow arrays of
    its output dtype, in ``rows``' order. A row with a null key or time gets nulls; a row
    whose key has no event in its window gets the empty-window values. Raises
    ``AggregationOverflow`` when a sum in ``names`` of an integer column has a window whose
    total does not fit in Int64 (partial sums outside it are no error)."""
    import numpy as np

    specs = [plan.spec(n) for n in names]
    n_rows = len(rows.t)
    usable = (~rows.null) & (rows.code >= 0)
    values: dict[str, Arrays] = {}  # per (window, slide): the window partials of usable rows
    order = _by_code_and_time(rows.code, rows.t, np.flatnonzero(usable))
    code, t = rows.code[order], rows.t[order]
    with np.errstate(all="ignore"):
        for (w, s), state in _windows(plan, specs, events, code, t, as_of).items():
            values[f"{w}:{s}"] = state
    out = {}
    for spec in specs:
        state = values[f"{spec.window_us}:{spec.slide_us}"]
        try:
            out[spec.name] = _output(plan.layout, spec, state, order, n_rows, events)
        except SumOverflow as exc:  # raised by finalize only: a window's total, not a tile's
            raise AggregationOverflow(plan.view, exc.column) from None
    return out


def _by_code_and_time(code: np.ndarray, t: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` ordered by (code, t), ties in their order: one stable sort of a packed
    int64 when code and time fit in one (twice as fast as ``lexsort``, the same order)."""
    import numpy as np

    if len(rows) == 0:
        return rows
    c, times = code[rows], t[rows]
    low, span = int(times.min()), int(times.max()) - int(times.min()) + 1
    if (int(c.max()) + 1) * span >= 2**63:
        return rows[np.lexsort((times, c))]
    return rows[np.argsort(c * span + (times - low), kind="stable")]


def _windows(
    plan: ViewAggregations,
    specs: Sequence[AggSpec],
    events: Events,
    code: np.ndarray,
    t: np.ndarray,
    as_of: str,
) -> dict[tuple[int, int], Arrays]:
    """Per (window, slide) of ``specs``, the window partial of every row (sorted rows)."""
    import numpy as np

    windows = list(dict.fromkeys((s.window_us, s.slide_us) for s in specs))
    layout = plan.layout
    states = {ws: _empty_arrays(layout, len(t)) for ws in windows}
    if len(t) == 0 or len(events.ts) == 0:
        return states
    longest = max(w + s for w, s in windows)
    # (key, time) packs as key * span + (time - base): every event's time must fall in
    # [base, base + span), not only the usable rows' windows (the engine prunes events by
    # the times of all entity rows, a row with a null key included)
    base = min(int(t.min()) - longest - DAY, int(events.ts.min()))
    span = max(int(t.max()), int(events.ts.max())) - base + 2

    def one(rows_slice: slice, events_slice: slice) -> tuple[slice, dict[tuple[int, int], Arrays]]:
        chunk = Events(
            events.code[events_slice],
            events.ts[events_slice],
            None if events.created is None else events.created[events_slice],
            {
                k: v.slice(events_slice.start, events_slice.stop - events_slice.start)
                for k, v in events.columns.items()
            },
        )
        if len(chunk.ts) == 0:
            return rows_slice, {}
        offset = events_slice.start
        c_code, c_t = code[rows_slice], t[rows_slice]
        known_only = as_of == "created" and chunk.created is not None
        with np.errstate(all="ignore"):
            return rows_slice, _by_tiles(
                layout, windows, chunk, c_code, c_t, base, span, offset, known_only
            )

    # Chunks are independent (whole keys): two threads, as numpy releases the GIL in its
    # loops, so both cores work (the merge's arithmetic is the same in either thread).
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for rows_slice, parts in pool.map(lambda c: one(*c), _chunks(code, events.code, span)):
            for ws, part in parts.items():
                for name, array in part.items():
                    states[ws][name][rows_slice] = array
    return states


def _chunks(row_code: np.ndarray, event_code: np.ndarray, span: int) -> list[tuple[slice, slice]]:
    """Row and event slices covering whole keys: few enough keys that (key, time) packs into
    an int64, and about ``CHUNK_EVENTS`` events each."""
    import numpy as np

    per_chunk = max(1, MAX_PACKED // span)
    codes = np.unique(row_code)
    bounds = [int(codes[0])]
    event_at = np.searchsorted(event_code, codes, side="left")
    start_events = event_at[0]
    for i in range(1, len(codes)):
        if codes[i] - bounds[-1] >= per_chunk or event_at[i] - start_events >= CHUNK_EVENTS:
            bounds.append(int(codes[i]))
            start_events = event_at[i]
    bounds.append(int(codes[-1]) + 1)
    out = []
    for lo, hi in itertools.pairwise(bounds):
        rows = slice(*np.searchsorted(row_code, [lo, hi]).tolist())
        evs = slice(*np.searchsorted(event_code, [lo, hi]).tolist())
        out.append((rows, evs))
    return out


def _empty_arrays(layout: Layout, n: int) -> Arrays:
    import numpy as np

    out: Arrays = {}
    for name, value in empty(layout).items():
        if name.startswith("last"):
            out[name] = np.full(n, -1, dtype=np.int64)
        else:
            out[name] = np.full(n, value, dtype=np.int64 if isinstance(value, int) else np.float64)
    return out


def _by_tiles(
    layout: Layout,
    windows: Sequence[tuple[int, int]],
    events: Events,
    code: np.ndarray,
    t: np.ndarray,
    base: int,
    span: int,
    offset: int,
    known_only: bool = False,
) -> dict[tuple[int, int], Arrays]:
    """Shared tiles, per-row heads, per-row left folds (module docstring); ``known_only``
    (as_of="created"): then the rows that see an event created after their time again,
    from their known events (``_late``).

    Each bound (of a range, of a head) is searched once among the events, whichever windows
    share it; a range's tiles are then counted from its bounds' event positions (a range
    holds whole tiles of its level), without a search among tiles."""
    import numpy as np

    partials = _event_partials(layout, events, offset)
    first = int(events.code[0])
    ev_code = events.code - first
    packed_events = ev_code * span + (events.ts - base)
    row_packed = (code - first) * span - base
    searched: dict[bytes, np.ndarray] = {}

    def position(times: np.ndarray) -> np.ndarray:
        """Per row, the index of its key's first event at or after its time in ``times``."""
        key = times.tobytes()
        if key not in searched:
            searched[key] = np.searchsorted(packed_events, row_packed + times, side="left")
        return searched[key]

    cuts: dict[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray]]] = {}
    head_bounds: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # slide -> event positions
    for w, s in windows:
        ranges, b = decompose(t, w, s, NumpyOps)
        cuts[(w, s)] = [(level, position(start), position(end)) for level, start, end in ranges]
        head_bounds[s] = (position(b), position(t))
    # every tile any row reads, then every head, in one pool
    pool: list[Arrays] = []
    pool_size = 0
    tiles_before: dict[int, np.ndarray] = {}  # level -> per event: pool index of its tile
    for level in sorted({level for w, s in windows for level in chain(w, s)}):
        read = [(lo, hi) for cut in cuts.values() for lvl, lo, hi in cut if lvl == level]
        needed = _covered(len(packed_events), read)
        key = ev_code[needed] * (span // level + 2) + (events.ts[needed] // level - base // level)
        starts = (
            np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) else key[:0]
        )
        pool.append(reduce_segments(layout, partials, starts, needed))
        # tiles_before[level][i]: the pool index of the first of the tiles starting at or
        # after event i (a range's bounds are tile starts: its tiles are those in between)
        is_start = np.zeros(len(packed_events) + 1, dtype=np.int64)
        is_start[needed[starts] + 1] = 1
        tiles_before[level] = pool_size + np.cumsum(is_start)
        pool_size += len(starts)
    heads: dict[int, tuple[np.ndarray, int]] = {}  # slide -> (rows with a head, pool offset)
    for slide, (lo, hi) in head_bounds.items():
        has = np.flatnonzero(hi > lo)
        heads[slide] = (has, pool_size)
        pool.append(_reduce_ranges(layout, partials, lo[has], hi[has]))
        pool_size += len(has)
    merged_pool = {name: np.concatenate([p[name] for p in pool]) for name in pool[0]}
    out = {}
    for w, s in windows:
        pieces: list[tuple[np.ndarray, np.ndarray]] = []  # per range: (first pool index, count)
        for level, lo, hi in cuts[(w, s)]:
            first_tile = tiles_before[level][lo]
            pieces.append((first_tile, tiles_before[level][hi] - first_tile))
        has, at = heads[s]
        head_count = np.zeros(len(t), dtype=np.int64)
        head_count[has] = 1
        head_first = np.zeros(len(t), dtype=np.int64)
        head_first[has] = at + np.arange(len(has))
        pieces.append((head_first, head_count))
        out[(w, s)] = _fold_pieces(layout, merged_pool, pieces, len(t))
    if known_only:
        late, first_late = _late_rows(events, packed_events, ev_code, code - first, t, base, span)
        if len(late):
            tiles = _Tiles(merged_pool, tiles_before, cuts, packed_events, row_packed)
            for ws in windows:
                late_values = _late(layout, ws, events, partials, tiles, t, late, first_late)
                for name, array in late_values.items():
                    out[ws][name][late] = array
    return out


@dataclass
class _Tiles:
    """What ``_by_tiles`` built, for ``_late``: the pool of tiles (and heads), per level the
    pool index of the first tile at or after each event, per window each range's event
    bounds (all rows), the packed events and each row's packing offset."""

    pool: Arrays
    tiles_before: dict[int, np.ndarray]
    cuts: dict[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray]]]
    packed_events: np.ndarray
    row_packed: np.ndarray


def _covered(n: int, intervals: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The indices ``0 .. n - 1`` inside any ``[lo[i], hi[i])`` of ``intervals``."""
    import numpy as np

    if not intervals:
        return np.zeros(0, dtype=np.int64)
    lo = np.concatenate([lo for lo, _ in intervals])
    hi = np.concatenate([hi for _, hi in intervals])
    depth = np.cumsum(np.bincount(lo, minlength=n + 1) - np.bincount(hi, minlength=n + 1))
    return np.flatnonzero(depth[:n] > 0)


def _fold_pieces(
    layout: Layout,
    pool: Arrays,
    pieces: Sequence[tuple[np.ndarray, np.ndarray]],
    n_rows: int,
) -> Arrays:
    """Each row's left fold of its pieces: for each ``(first, count)`` of ``pieces`` in
    order, the pool entries ``first .. first + count - 1``; a row without pieces gets the
    empty partial.

    Rows are ordered by their number of pieces (most first), so round ``k`` folds piece
    ``k`` into a prefix of the state: the rows past it are done, and written out."""
    import numpy as np

    first = np.stack([first for first, _ in pieces], axis=1)  # rows x ranges
    count = np.stack([count for _, count in pieces], axis=1)
    total = np.zeros(len(count), dtype=np.int64)
    for column in count.T:  # not count.sum(axis=1): ten times slower on a few columns
        total += column
    order = np.argsort(-total, kind="stable")
    sorted_total = total[order]
    row_start = np.concatenate([[0], np.cumsum(sorted_total)[:-1]])
    flat = _ranges(first[order].ravel(), count[order].ravel())  # each row's pieces in order
    out = _empty_arrays(layout, n_rows)
    longest = int(sorted_total[0]) if n_rows else 0
    active = np.searchsorted(-sorted_total, -np.arange(longest + 1), side="left")  # rows > k
    state: Arrays = {}
    for k in range(longest):
        c = int(active[k])
        piece = take(pool, flat[row_start[:c] + k])
        # merging into the empty partial gives the piece itself
        state = piece if k == 0 else merge(layout, take(state, slice(c)), piece, NUMPY)
        done = slice(int(active[k + 1]), c)  # rows whose last piece this was
        for name in out:
            out[name][order[done]] = state[name][done]
    return out


def _event_partials(layout: Layout, events: Events, offset: int) -> Arrays:
    """Each event as a partial; ``last`` holds its index in the whole event table."""
    from featurestore.aggregations.tiles import counts_only

    if not layout.columns:
        return counts_only(len(events.ts))
    partials = event_partials(layout, events.columns)
    for column in layout.columns:
        if "last" in column.kinds:
            partials[column.field("last")] = partials[column.field("last")] + offset
    return partials


def _reduce_ranges(layout: Layout, partials: Arrays, lo: np.ndarray, hi: np.ndarray) -> Arrays:
    """The pairwise merge of ``partials[lo[i]:hi[i]]`` for each i (ranges may overlap)."""
    import numpy as np

    if len(lo) == 0:
        return take(partials, np.zeros(0, dtype=np.int64))
    lengths = hi - lo
    gathered = take(partials, _ranges(lo, lengths))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return reduce_segments(layout, gathered, starts)


def _late_rows(
    events: Events,
    packed: np.ndarray,
    key: np.ndarray,
    row_key: np.ndarray,
    t: np.ndarray,
    base: int,
    span: int,
) -> tuple[np.ndarray, np.ndarray]:
    """as_of="created": the rows (indices) whose key has an event before ``t`` created after
    ``t``, and for each the first such event (index): every other row knows all its
    window's events, and keeps the event path's value, bit for bit (the same events, the
    same trees). One pass: the running greatest created time of each key's events (events
    in (key, time) order), searched for the first one past the row's ``t``.

    Created times are clipped into the packing's span (a missing one, the smallest int64,
    to its start; one after every row to its end): that keeps each comparison with a row's
    ``t``, and the key in the high part keeps the running maximum within the key."""
    import numpy as np

    assert events.created is not None
    created = np.clip(events.created, base, base + span - 1)
    newest = np.maximum.accumulate(key * span + (created - base))
    before = np.searchsorted(packed, row_key * span + (t - base), side="left") - 1
    first_late = np.searchsorted(newest, row_key * span + (t - base), side="right")
    late = np.flatnonzero(first_late <= before)
    return late, first_late[late]


def _late(
    layout: Layout,
    window: tuple[int, int],
    events: Events,
    partials: Arrays,
    tiles: _Tiles,
    t: np.ndarray,
    late: np.ndarray,
    first_late: np.ndarray,
) -> Arrays:
    """as_of="created": the window partials of the ``late`` rows (``_late_rows``) from their
    known events. A row's pieces before the piece holding its first late event are shared
    tiles, all known; the rest of the window, from that piece's start (the cut) to ``t``,
    is cut into the same pieces from the events created by ``t`` (``_known_pieces``), and
    the left fold runs over both in order: the same trees as the event path over fewer
    events. A late event before the window puts the cut at the window's start.

    Work per (row, event after its cut): rows go in passes of about ``PAIRS_PER_PASS`` of
    those and their shared tiles, so memory stays bounded."""
    import numpy as np

    w, s = window
    t = t[late]
    late_ts = events.ts[first_late]
    ranges, b = decompose(t, w, s, NumpyOps)
    cut = np.where(late_ts < b - w, b - w, b)
    for level, start, end in ranges:
        inside = (late_ts >= start) & (late_ts < end)
        cut[inside] = late_ts[inside] // level * level
    row_packed = tiles.row_packed[late]
    at_cut = np.searchsorted(tiles.packed_events, row_packed + cut, side="left")
    at_t = np.searchsorted(tiles.packed_events, row_packed + t, side="left")
    # per range, its tiles before the cut (ranges hold whole tiles, and the cut is a tile
    # start of the range holding it: the tiles starting at events before it)
    firsts, counts = [], []
    for level, lo, hi in tiles.cuts[window]:
        before = tiles.tiles_before[level]
        firsts.append(before[lo[late]])
        counts.append(np.maximum(before[np.minimum(hi[late], at_cut)] - firsts[-1], 0))
    first, count = np.stack(firsts, axis=1), np.stack(counts, axis=1)
    shared = count.sum(axis=1)
    out = _empty_arrays(layout, len(t))
    for rows in _passes(shared + at_t - at_cut, PAIRS_PER_PASS):
        own, own_first, own_count = _known_pieces(
            layout, partials, events, t[rows], at_cut[rows], at_t[rows], w, s
        )
        taken = take(tiles.pool, _ranges(first[rows].ravel(), count[rows].ravel()))
        n_shared = len(taken["count"])
        pool = {name: np.concatenate([taken[name], own[name]]) for name in taken}
        shared_first = np.concatenate([[0], np.cumsum(shared[rows])[:-1]])
        state = _fold_pieces(
            layout,
            pool,
            [(shared_first, shared[rows]), (own_first + n_shared, own_count)],
            len(own_first),
        )
        for name, array in state.items():
            out[name][rows] = array
    return out


def _passes(lengths: np.ndarray, budget: int) -> list[slice]:
    """Consecutive slices of rows whose ``lengths`` add up to about ``budget`` each (a row
    longer than the budget alone)."""
    import numpy as np

    ends = np.cumsum(lengths)
    out = []
    start = 0
    while start < len(lengths):
        before = int(ends[start - 1]) if start else 0
        stop = int(np.searchsorted(ends, before + budget, side="right"))
        stop = max(stop, start + 1)
        out.append(slice(start, stop))
        start = stop
    return out


def _known_pieces(
    layout: Layout,
    partials: Arrays,
    events: Events,
    t: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    w: int,
    s: int,
) -> tuple[Arrays, np.ndarray, np.ndarray]:
    """The pieces of rows at ``t`` over events ``lo[i]:hi[i]`` (a window's events from a
    piece's start): of those, the ones created by ``t``, merged piece by piece. Returns the
    pieces, and per row its first piece and number of pieces (in time order)."""
    import numpy as np

    assert events.created is not None
    lengths = hi - lo
    pair_row = np.repeat(np.arange(len(t)), lengths)
    pair_event = _ranges(lo, lengths)
    known = events.created[pair_event] <= t[pair_row]
    pair_row, pair_event = pair_row[known], pair_event[known]
    no_piece = np.zeros(len(t), dtype=np.int64)
    if len(pair_row) == 0:
        return take(partials, pair_event), no_piece, no_piece
    # the piece of each (row, event), named by its start: a row's pieces (the tiles of its
    # ranges, then the head [b, t)) are disjoint and in time order, so their starts order
    # them (any packing of range and tile number overflows for small slides)
    ranges, b = decompose(t, w, s, NumpyOps)
    ts = events.ts[pair_event]
    piece = b[pair_row]  # the head, unless a range holds the event
    for level, start, end in ranges:
        inside = (ts >= start[pair_row]) & (ts < end[pair_row])
        piece[inside] = ts[inside] // level * level
    key = np.lexsort((piece, pair_row))  # already in event order within a piece
    pair_row, pair_event, piece = pair_row[key], pair_event[key], piece[key]
    segment = np.flatnonzero(
        np.concatenate([[True], (pair_row[1:] != pair_row[:-1]) | (piece[1:] != piece[:-1])])
    )
    pieces = reduce_segments(layout, take(partials, pair_event), segment)
    seg_row = pair_row[segment]
    row_first = np.searchsorted(seg_row, np.arange(len(t)), side="left")
    row_count = np.searchsorted(seg_row, np.arange(len(t)), side="right") - row_first
    return pieces, row_first, row_count


def _output(
    layout: Layout,
    spec: AggSpec,
    state: Arrays,
    order: np.ndarray,
    n_rows: int,
    events: Events,
) -> pa.Array:
    """One aggregation's output column, in the caller's row order, of its output dtype."""
    import numpy as np
    import pyarrow as pa

    null = np.ones(n_rows, dtype=bool)
    if spec.function == "count":
        values: Any = np.zeros(n_rows, dtype=np.int64)
        values[order] = state["count"]
        null[order] = False
        return pa.array(values, pa.int64(), mask=null)
    column = layout.column(spec.column)
    value, is_null = finalize(column, spec.function, state, NUMPY)
    null[order] = np.broadcast_to(is_null, len(order))
    if spec.function == "last":
        index = np.zeros(n_rows, dtype=np.int64)
        index[order] = np.where(is_null, 0, value)
        if len(events.ts) == 0:
            return pa.nulls(n_rows, spec.output.to_arrow())
        return _masked(events.columns[spec.column].take(pa.array(index)), null, spec)
    out = np.zeros(n_rows, dtype=np.asarray(value).dtype)
    out[order] = value
    arrow_type = spec.output.to_arrow()
    if spec.output.name == "UnixTimestamp":
        return pa.array(out.astype(np.int64), pa.int64(), mask=null).cast(arrow_type)
    return pa.array(out, mask=null).cast(arrow_type)


def _masked(taken: pa.Array, null: np.ndarray, spec: AggSpec) -> pa.Array:
    """``taken`` with ``null`` rows set to null, cast to the output type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(taken, pa.ChunkedArray):
        taken = taken.combine_chunks()
    return pc.if_else(pa.array(null), pa.nulls(len(taken), taken.type), taken).cast(
        spec.output.to_arrow()
    )
