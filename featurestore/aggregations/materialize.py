"""Materializing an aggregated view: candidate events -> whole tiles -> the store -> watermark.

A run to ``end`` (exclusive: events with ``event_ts < end``) takes as candidates the events
``materialize`` or ``materialize_incremental`` would take for a plain view
(``start <= event_ts``, or created after the last run's greatest created time), and for each
key with a candidate reads its events from the first tile any of them touches
(``OfflineEngine.read_tile_events``), then writes every tile from there on that a window can
still read (``aggregations.online.tile_rows``), each recomputed whole from the source: re-runs
are idempotent and late events heal their tiles. The store refuses a tile whose stored
version came from a later run end, and every write checks the run's claim. After the
watermark moves, tiles no window can read any more (older than the longest window using
their level, plus its slide, before the end) are deleted from every key, once each time the
end crosses a boundary of the view's coarsest level (so at most one such tile per key and
level is kept too long).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING

from featurestore.online.codec import entity_keys, timestamp_us

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.aggregations.plan import ViewAggregations
    from featurestore.definitions import FeatureView
    from featurestore.materialize import ViewRun, Window, _Run
    from featurestore.online.base import Claim, Watermark

log = logging.getLogger("featurestore.materialize")


def keep_from(plan: ViewAggregations, end_us: int) -> list[tuple[int, int]]:
    """Per level (its position), the first tile number a read at or after ``end_us`` can use."""
    return [
        (i, (end_us - plan.retention_us(level)) // level) for i, level in enumerate(plan.levels)
    ]


def materialize_tiles(
    run: _Run, view: FeatureView, claim: Claim, window: Window, mark: Watermark | None
) -> ViewRun:
    """One aggregated view's run (module docstring); returns what it did."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from featurestore.aggregations.online import tile_codec, tile_rows
    from featurestore.materialize import ViewRun, _later, covered_end, last_end, next_watermark
    from featurestore.offline.plan import TileEventsPlan, plan_view

    log.info("materializing aggregated view %s: %s (end exclusive)", view.name, window.describe())
    run.progress.view_started(view.name, window)
    began = time.perf_counter()
    planned = plan_view(
        view,
        run.state.key_dtypes(view.name),
        view.feature_names,
        full_feature_names=False,
        repo_path=run.config.repo_path,
    )
    aggregations = planned.aggregations
    assert aggregations is not None
    end_us = timestamp_us(window.end)
    new_end = covered_end(mark, window.end)
    new_end_us = timestamp_us(new_end)
    bounds = tuple(
        (level, (new_end_us - aggregations.retention_us(level)) // level * level)
        for level in aggregations.levels
    )
    plan = TileEventsPlan(planned, window.end, window.start, window.created_after, bounds)
    codec = tile_codec(aggregations)
    join_keys = list(view.join_keys)
    events_read = written = 0
    seen_created = None
    carry: pa.Table | None = None

    def flush(table: pa.Table) -> None:
        nonlocal written
        found = tile_rows(aggregations, codec, table, join_keys, end_us, new_end_us)
        keys = entity_keys(found.keys.combine_chunks().to_batches()[0], join_keys)
        count = run.store.write_tiles(claim, keys, found.tiles)
        written += count
        run.progress.batch_written(view.name, table.num_rows, count)

    for batch in run.engine.read_tile_events(plan, batch_rows=run.batch_rows):
        events_read += batch.num_rows
        if view.source.created_timestamp_column is not None:
            created = pc.max(batch.column("__fs_created")).as_py()
            if created is not None and created > -(2**63):
                seen_created = _later(seen_created, _from_us(created))
        table = (
            pa.Table.from_batches([batch])
            if carry is None
            else pa.concat_tables([carry, pa.Table.from_batches([batch])])
        )
        cut = _last_key_start(table, join_keys)
        if cut:
            flush(table.slice(0, cut))
        carry = table.slice(cut)
    if carry is not None and carry.num_rows:
        flush(carry)
    watermark = next_watermark(mark, window, seen_created)
    run.store.set_watermark(claim, watermark)
    top = aggregations.levels[-1]
    if mark is not None and new_end_us // top > timestamp_us(last_end(mark)) // top:
        removed = run.store.remove_tiles(claim, keep_from(aggregations, new_end_us))
        log.info("removed %d tiles of %s no window can read any more", removed, view.name)
    seconds = time.perf_counter() - began
    result = ViewRun(view.name, window, events_read, written, seconds, watermark)
    log.info(
        "materialized aggregated view %s: %d events read, %d tiles written in %.2f s; "
        "watermark end %s",
        view.name,
        events_read,
        written,
        seconds,
        watermark.end.isoformat(),
    )
    run.progress.view_finished(result)
    return result


def _from_us(us: int) -> datetime:
    from featurestore.online.codec import from_us

    return from_us(us)


def _last_key_start(table: pa.Table, join_keys: list[str]) -> int:
    """Where the last key's rows start (its rows may continue in the next batch)."""
    import numpy as np
    import pyarrow.compute as pc

    n = table.num_rows
    same = np.ones(n, dtype=bool)
    for name in join_keys:
        column = table[name]
        last = column[n - 1]
        same &= pc.fill_null(pc.equal(column, last), False).to_numpy(zero_copy_only=False)
    different = np.flatnonzero(~same)
    return int(different[-1]) + 1 if len(different) else 0
