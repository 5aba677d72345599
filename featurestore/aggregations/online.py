"""Aggregations online: tiles written by materialization, merged by a read at ``now``.

**Writing.** A run to end ``E`` reads, per key it touches, the key's events from the
earliest start of a tile holding one of its candidate events (new since the last run, or
created after it: late) up to ``E`` (exclusive), sorted in the join's order
(``OfflineEngine.read_tile_events``). ``tile_rows`` computes every tile that starts at or
after that point (so each is whole: recomputed, never incremented) and that a window can
still read, with ``tiles.reduce_segments``, the function the offline path uses, and encodes
it: a row codec record (``online/codec.py``) of the partial's fields, whose 16-byte prefix
is (tile start, ``E``). The store writes a tile unless the one it holds has a greater
prefix: a tile is never replaced by one computed from an earlier run end.

**Reading.** ``ReadShape.at(now)`` lists the tiles a request needs: every window's pieces
(``windows.decompose``, the cut the offline path makes) and its head, the slide tile
holding ``now`` (which holds the events before the run's end). ``answer`` folds each
window's tiles left to right with ``partials.merge`` on the Python backend and finalizes:
the offline path's arithmetic, operation for operation, on the same partials. A tile id is
``(level position, tile number)``: the tile of level ``levels[i]`` starting at
``number * levels[i]`` µs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featurestore.aggregations.partials import (
    PYTHON,
    Layout,
    SumOverflow,
    empty,
    finalize,
    merge,
)
from featurestore.aggregations.plan import AggSpec, ViewAggregations
from featurestore.aggregations.windows import chain, decompose
from featurestore.columns import CREATED_TS, EVENT_TS

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from featurestore.online.codec import RowCodec

TileId = tuple[int, int]  # (position of the level in the view's levels, tile number)

TS = "__fs_ts"
LOWER = "__fs_lower"


def tile_codec(plan: ViewAggregations) -> RowCodec:
    """The row codec of a view's tile records (fields: ``partials.Layout.fields``)."""
    from featurestore.online.codec import RowCodec

    return RowCodec(plan.tile_fields())


@dataclass(frozen=True)
class KeyTiles:
    """The tiles of one run for a batch of keys: per key, its tile ids and encoded rows."""

    keys: pa.Table  # one row per entity key: the join key columns
    tiles: list[list[tuple[TileId, bytes]]]

    @property
    def count(self) -> int:
        return sum(len(t) for t in self.tiles)


def tile_rows(
    plan: ViewAggregations,
    codec: RowCodec,
    events: pa.Table,
    join_keys: Sequence[str],
    end_us: int,
    retain_end_us: int | None = None,
) -> KeyTiles:
    """Every whole tile of ``events`` worth keeping (see the module docstring), encoded.

    ``events``: whole keys, sorted by (keys, the join's order): the join keys, ``__fs_ts``
    (µs), ``__fs_lower`` (µs: the key's first event read; tiles starting earlier are not
    whole and are skipped) and the aggregated columns.
    """
    import numpy as np
    import pyarrow as pa

    from featurestore.aggregations.tiles import counts_only, event_partials, reduce_segments

    n = events.num_rows
    ts = events[TS].to_numpy()
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for name in join_keys:
        column = events[name].combine_chunks()
        change[1:] |= np.asarray(pc_not_equal(column.slice(1), column.slice(0, n - 1)))
    key_starts = np.flatnonzero(change)
    code = np.cumsum(change) - 1
    lower = events[LOWER].to_numpy()
    columns = {c.name: events[c.name] for c in plan.layout.columns}
    partials = event_partials(plan.layout, columns) if plan.layout.columns else counts_only(n)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
    for position, level in enumerate(plan.levels):
        number = ts // level
        starts = np.flatnonzero(change | np.concatenate([[True], number[1:] != number[:-1]]))
        merged = reduce_segments(plan.layout, partials, starts)
        begin = number[starts] * level
        retained = ((retain_end_us or end_us) - plan.retention_us(level)) // level * level
        keep = (begin >= lower[starts]) & (begin >= retained)
        found.append(
            (
                code[starts][keep],
                np.full(int(keep.sum()), position),
                number[starts][keep],
                {k: v[keep] for k, v in merged.items()},
            )
        )
    all_code = np.concatenate([f[0] for f in found])
    all_level = np.concatenate([f[1] for f in found])
    all_number = np.concatenate([f[2] for f in found])
    fields = {name: np.concatenate([f[3][name] for f in found]) for name in found[0][3]}
    begin = all_number * np.asarray(plan.levels, dtype=np.int64)[all_level]
    batch = _tile_batch(plan, fields, columns, begin, end_us)
    rows = codec.encode_batch(batch)
    tiles: list[list[tuple[TileId, bytes]]] = [[] for _ in key_starts]
    for c, lv, num, row in zip(
        all_code.tolist(), all_level.tolist(), all_number.tolist(), rows, strict=True
    ):
        tiles[c].append(((lv, num), row))
    keys = events.select(list(join_keys)).take(pa.array(key_starts))
    return KeyTiles(keys, tiles)


def pc_not_equal(a: pa.Array, b: pa.Array) -> Any:
    import pyarrow.compute as pc

    return pc.not_equal(a, b).to_numpy(zero_copy_only=False)


def _tile_batch(
    plan: ViewAggregations,
    fields: dict[str, np.ndarray],
    columns: dict[str, Any],
    begin: np.ndarray,
    end_us: int,
) -> pa.RecordBatch:
    """The tiles as the codec's input: each field by name (``last`` as the event's value),
    the event time (``columns.EVENT_TS``) = tile start, the created time = the run's end."""
    import numpy as np
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    out: dict[str, pa.Array] = {}
    for name, dtype in plan.layout.fields:
        values = fields[name]
        if name.startswith("last"):
            column = plan.layout.columns[int(name[4:])]
            n_field = fields[column.field("n")]
            source = columns[column.name]
            taken = source.take(pa.array(np.where(n_field > 0, values, 0)))
            if isinstance(taken, pa.ChunkedArray):
                taken = taken.combine_chunks()
            import pyarrow.compute as pc

            out[name] = pc.if_else(
                pa.array(n_field == 0), pa.nulls(len(taken), taken.type), taken
            ).cast(dtype.to_arrow())
        elif name.startswith(("min", "max")):
            column = plan.layout.columns[int(name[3:])]
            null = fields[column.field("n")] == 0
            out[name] = pa.array(values, dtype.to_arrow(), mask=null)
        else:
            out[name] = pa.array(values, dtype.to_arrow())
    out[EVENT_TS] = pa.array(begin, pa.int64()).cast(utc)
    out[CREATED_TS] = pa.array(np.full(len(begin), end_us), pa.int64()).cast(utc)
    return pa.RecordBatch.from_pydict(out)


# --- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowPieces:
    """One (window, slide) at ``now``: its pieces as positions in ``ReadShape.tiles``."""

    window_us: int
    slide_us: int
    pieces: tuple[int, ...]


@dataclass(frozen=True)
class ReadShape:
    """The tiles a read at ``now`` needs, and which of them each window folds."""

    tiles: tuple[TileId, ...]
    windows: tuple[WindowPieces, ...]

    @classmethod
    def at(
        cls, plan: ViewAggregations, windows: Sequence[tuple[int, int]], now_us: int
    ) -> ReadShape:
        ids: dict[TileId, int] = {}
        shaped = []
        position = {level: i for i, level in enumerate(plan.levels)}
        for w, s in windows:
            ranges, b = decompose(now_us, w, s)
            pieces = []
            for level, start, end in ranges:
                lv = position[level]
                for number in range(start // level, end // level):
                    pieces.append(ids.setdefault((lv, number), len(ids)))
            if b < now_us:
                pieces.append(ids.setdefault((position[s], b // s), len(ids)))
            shaped.append(WindowPieces(w, s, tuple(pieces)))
        return cls(tuple(ids), tuple(shaped))


def answer(
    plan: ViewAggregations,
    shape: ReadShape,
    specs: Sequence[AggSpec],
    tiles: Sequence[dict[str, Any] | None],
) -> list[tuple[Any, bool]]:
    """Each spec's ``(value, is_null)`` for one entity, from its decoded tiles (in
    ``shape.tiles`` order; None = no tile). Raises ``SumOverflow``."""
    layout: Layout = plan.layout
    states: dict[tuple[int, int], Any] = {}
    for window in shape.windows:
        state: Any = None
        for i in window.pieces:
            tile = tiles[i]
            if tile is not None:
                state = tile if state is None else merge(layout, state, tile, PYTHON)
        states[(window.window_us, window.slide_us)] = state if state is not None else empty(layout)
    out = []
    for spec in specs:
        state = states[(spec.window_us, spec.slide_us)]
        if spec.function == "count":
            out.append((state["count"], False))
            continue
        column = layout.column(spec.column)
        value, null = finalize(column, spec.function, state, PYTHON)
        out.append((value, bool(null)))
    return out


__all__ = ["KeyTiles", "ReadShape", "SumOverflow", "answer", "chain", "tile_codec", "tile_rows"]
