"""Aggregated views in Redis: tiles in the key's own hash, beside its plain views' rows.

Layout (featurestore/online/redis.py holds the rest)::

    <project>|<entity key>   HASH   <generation>:<level>:<tile> -> tile row (codec.py record
                                    of the partial's fields; prefix (tile start, run end))

``<level>`` is the level's position in the view's levels and ``<tile>`` the tile's number
(its start in µs divided by the level), e.g. ``7:1:493851`` is generation 7's hour tile
starting 2026-05-03 03:00 UTC when the view's levels are (5 min, 1 h, 1 d). A key's tiles
are fields of the key's own hash, so on Redis Cluster they live in the key's slot, and a
field prefixed by the generation belongs to exactly one definition, like a plain row.

The scripts are in featurestore/online/redis_scripts.py with the others.

- **Writes** (``TILE_WRITE_SCRIPT``): one script call per batch of keys checks that
  ``view:<view>`` still holds the run's claim (else nothing is written and the run fails),
  then writes each tile unless the stored one's 16-byte prefix (tile start, run end) is
  greater: a tile is never replaced by one computed from an earlier run end.
- **Reads** (``TILE_READ_SCRIPT``, read-only): per view, resolves the generation and the covered
  end (``watermark:<view>``) in the meta hash and HMGETs the asked tiles of every key; sent
  in the same pipeline as the plain views' read script, so a request is one round trip.
- **Old tiles** (``TILE_SWEEP_SCRIPT``): a cursor SCAN over the project's keys deletes the
  generation's tiles that no window can read any more; a drop or claim retires the whole
  generation like a plain view's rows (its fields all start with ``<generation>:``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from featurestore.online import redis_scripts as lua
from featurestore.online.base import Claim, TileAnswer, TileId, TileRead
from featurestore.online.codec import from_us

if TYPE_CHECKING:
    from featurestore.online.redis import RedisOnlineStore

TILES_PER_CALL = 4_000  # tiles per write script call
SWEEP_COUNT = 500  # keys per SCAN step of the sweep


def tile_name(tile: TileId) -> str:
    """A tile's field name without its generation: ``<level>:<number>``."""
    return f"{tile[0]}:{tile[1]}"


def write_tiles(
    store: RedisOnlineStore,
    claim: Claim,
    entity_keys: Sequence[str],
    tiles: Sequence[Sequence[tuple[TileId, bytes]]],
    head: tuple[str, str, int],
) -> list[Any]:
    """The write script calls for ``tiles`` (see ``TILE_WRITE``), batched by tile count;
    ``head``: ``view:<view>``, the claim's value, the generation."""
    commands = []
    keys: list[str] = []
    args: list[Any] = []
    count = 0
    for key, key_tiles in zip(entity_keys, tiles, strict=True):
        if not key_tiles:
            continue
        keys.append(store.hash_key(key))
        args.append(len(key_tiles))
        for tile, row in key_tiles:
            args += [tile_name(tile), row]
        count += len(key_tiles)
        if count >= TILES_PER_CALL:
            commands.append(
                ("EVALSHA", lua.TILE_WRITE_SHA, len(keys) + 1, store.meta_key, *keys, *head, *args)
            )
            keys, args, count = [], [], 0
    if keys:
        commands.append(
            ("EVALSHA", lua.TILE_WRITE_SHA, len(keys) + 1, store.meta_key, *keys, *head, *args)
        )
    return commands


def read_commands(store: RedisOnlineStore, request: TileRead) -> tuple[Any, ...]:
    """The read script call of one ``TileRead``."""
    view = request.view
    return (
        "EVALSHA",
        lua.TILE_READ_SHA,
        len(request.entity_keys) + 1,
        store.meta_key,
        *(store.hash_key(k) for k in request.entity_keys),
        f"view:{view.view}",
        f"{view.fingerprint}:{view.layout}",
        f"watermark:{view.view}",
        *(tile_name(t) for t in request.tiles),
    )


def parse_read(store: RedisOnlineStore, request: TileRead, reply: list[Any]) -> TileAnswer:
    """A ``TILE_READ`` reply as a ``TileAnswer`` (refused tiles counted)."""
    status = reply[0]
    nothing: list[list[bytes | None]] = [[None] * len(request.tiles) for _ in request.entity_keys]
    if status == b"x":
        store.count_refused(request.view.view, int(reply[1]))
    if status != b".":
        return TileAnswer(None, nothing)
    mark = reply[1]
    end = from_us(int(mark.split(b":")[0])) if mark else None
    return TileAnswer(end, [list(r) for r in reply[2:]])


def sweep(store: RedisOnlineStore, claim: Claim, keep_from: Sequence[TileId]) -> int:
    """Delete the generation's tiles older than ``keep_from`` in every key (a SCAN pass)."""
    client = store.client
    args: list[Any] = [claim.generation]
    for level, first in keep_from:
        args += [level, first]
    removed = 0
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, match=f"{store.hash_key('')}*", count=SWEEP_COUNT)
        if keys:
            removed += int(
                store.run_scripts([("EVALSHA", lua.TILE_SWEEP_SHA, len(keys), *keys, *args)])[0]
            )
        if cursor == 0:
            return removed


def collect(store: RedisOnlineStore, keys: Sequence[Any], retired: Sequence[bytes]) -> int:
    """Delete the tiles of ``retired`` generations in ``keys`` (a drop's collection pass)."""
    return int(
        store.run_scripts([("EVALSHA", lua.TILE_COLLECT_SHA, len(keys), *keys, *retired)])[0]
    )
