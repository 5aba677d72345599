"""Online reads: entity rows + features -> one store round trip -> values with statuses.

Per entity row and requested feature, with the view's ttl ``d`` and ``now`` (default: the
current time), the stored row (the latest ever materialized for that key) gives a status
(featurestore/online/response.py): PRESENT when ``now - d <= event_ts`` (no ttl: always),
NULL_VALUE when the stored value itself is null, OUTSIDE_MAX_AGE (null) when older,
NOT_FOUND (null) when there is no row. This is the offline join's rule read at ``now``, so
``online(now=T)`` equals ``get_historical_features`` at ``T`` once everything up to ``T`` is
materialized. ``now`` only moves the ttl check; the store holds the latest row, so a read is
never point-in-time. A stored row is decoded only when the store holds it for the applied
definition, the view's fingerprint and row layout (``ViewIdentity``, featurestore/online/
base.py); any other row reads NOT_FOUND and is counted in the store's ``refused_rows``.

Features of on-demand views are computed after the read, from the features read (the inputs
not asked for are read under reserved names and dropped) and the request fields in the
entity rows, by the one ``transforms.transform`` the offline path calls: PRESENT, or
NULL_VALUE when null; no event time (featurestore/transforms.py).

An aggregated view is answered from its tiles (featurestore/aggregations/online.py): each
window ending at ``now`` folded from the tiles that cover it, so values age out as ``now``
moves. Once the view is materialized its values are never NOT_FOUND (a key without tiles
has the empty-window values: count 0, sum 0, others null as NULL_VALUE); each value's
event timestamp is the view's covered end (the end of its last run); with a ttl, a value
whose covered end is more than ttl before ``now`` is null with OUTSIDE_MAX_AGE (the ttl is
the maximum staleness); a view never materialized is NOT_FOUND; a ``now`` before the
covered end is an error (the tiles hold later events). Mixed requests are still one round
trip (``OnlineStore.read_tiles``).

Speed: what does not depend on the entity rows (resolving references, grouping views by
their entity keys, the codecs) is compiled once per request shape into a ``ReadPlan`` and
cached; each call then checks key types, builds keys, makes one store call and decodes rows
with plain Python (no pandas or Arrow per call; ``to_df``/``to_arrow`` convert on demand).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featurestore.aggregations.online import ReadShape, answer, tile_codec
from featurestore.aggregations.partials import SumOverflow
from featurestore.aggregations.plan import AggSpec, ViewAggregations
from featurestore.columns import check_unique, feature_column
from featurestore.definitions import FeatureService, FeatureViewProjection
from featurestore.errors import MaterializedAheadError, RetrievalError
from featurestore.online.base import KeyGroup, OnlineStore, TileAnswer, TileRead, ViewIdentity
from featurestore.online.codec import (
    RowCodec,
    from_us,
    timestamp_us,
)
from featurestore.online.entity_rows import (
    EntityRows,
    entity_keys,
    key_columns,
    listed_rows,
    request_columns,
)
from featurestore.online.response import (
    NOT_FOUND,
    NULL_VALUE,
    OUTSIDE_MAX_AGE,
    PRESENT,
    OnlineResponse,
)
from featurestore.transforms import Transformation, hidden_column, split_request, transform
from featurestore.types import DType, check_time

if TYPE_CHECKING:
    from pathlib import Path

    from featurestore.registry_state import RegistryState

MAX_PLANS = 1_000  # compiled request shapes kept per reader


@dataclass(frozen=True)
class ViewRead:
    """How to turn one view's stored rows into output columns."""

    view: str
    identity: ViewIdentity  # the data the store must hold for its rows to be decoded
    codec: RowCodec
    ttl_us: int | None
    positions: tuple[int, ...]  # requested features' positions in the stored row
    names: tuple[str, ...]  # their output column names


@dataclass(frozen=True)
class GroupRead:
    """Views that share one entity key: one key per entity row reads all of them."""

    keys: tuple[tuple[str, DType], ...]  # join keys, sorted by name
    views: tuple[ViewRead, ...]

    @property
    def identities(self) -> tuple[ViewIdentity, ...]:
        return tuple(v.identity for v in self.views)


@dataclass(frozen=True)
class AggregatedRead:
    """How to answer one aggregated view's requested features from its tiles."""

    view: str
    identity: ViewIdentity
    keys: tuple[tuple[str, DType], ...]  # join keys, sorted by name
    plan: ViewAggregations
    specs: tuple[AggSpec, ...]  # the requested aggregations
    names: tuple[str, ...]  # their output column names
    codec: RowCodec  # of the view's tile records
    ttl_us: int | None  # the maximum staleness: now - covered end

    @property
    def windows(self) -> tuple[tuple[int, int], ...]:
        return tuple(dict.fromkeys((s.window_us, s.slide_us) for s in self.specs))


@dataclass(frozen=True)
class ReadPlan:
    """Everything about a request that does not depend on its entity rows."""

    join_keys: tuple[tuple[str, DType], ...]  # in order of first use (output: as given)
    groups: tuple[GroupRead, ...]
    features: tuple[tuple[str, DType], ...]  # output names and dtypes: read, then computed
    transformations: tuple[Transformation, ...] = ()
    inputs: tuple[tuple[str, DType], ...] = ()  # features read only as transformation inputs

    @property
    def request_fields(self) -> tuple[tuple[str, DType], ...]:
        """The request fields the transformations read (the first dtype of a shared name)."""
        found: dict[str, DType] = {}
        for t in self.transformations:
            for field in t.request_fields:
                found.setdefault(field.column, field.dtype)
        return tuple(found.items())

    aggregated: tuple[AggregatedRead, ...] = ()

    @property
    def views_read(self) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
        """Every view the request reads, plain or aggregated: (view, its output column
        names, the features they are), in plan order."""
        plain = [
            (v.view, v.names, tuple(v.codec.features[p].name for p in v.positions))
            for g in self.groups
            for v in g.views
        ]
        aggregated = [(a.view, a.names, tuple(s.name for s in a.specs)) for a in self.aggregated]
        return tuple(plain + aggregated)


def compile_plan(
    state: RegistryState,
    projections: Sequence[FeatureViewProjection],
    full_feature_names: bool,
    repo_path: Path | None = None,
) -> ReadPlan:
    """Group the projected views by entity key and prepare their codecs; plan the
    transformations of on-demand views (functions imported from ``repo_path``)."""
    groups: dict[tuple[tuple[str, DType], ...], list[ViewRead]] = {}
    features: list[tuple[str, DType]] = []
    inputs: list[tuple[str, DType]] = []
    owners: list[tuple[str, str]] = []  # (output column, what it is), for the clash check
    aggregated: list[AggregatedRead] = []
    split = split_request(state, projections, full_feature_names, repo_path)
    join_keys = state.shared_key_dtypes(r.view.name for r in split.reads)
    for read_view in split.reads:
        view = read_view.view
        if not view.online:
            raise RetrievalError(
                f"feature view {view.name!r} is not served online (online=False in its "
                "definition); read it with get_historical_features"
            )
        key_dtypes = state.key_dtypes(view.name)
        order = view.feature_names
        asked = read_view.asked
        out = tuple(feature_column(view.name, f, full_feature_names) for f in asked)
        owners += [(o, f"feature '{view.name}:{f}'") for o, f in zip(out, asked, strict=True)]
        features += [(name, view.feature(f).dtype) for name, f in zip(out, asked, strict=True)]
        hidden = tuple(hidden_column(view.name, f) for f in read_view.hidden)
        inputs += [
            (name, view.feature(f).dtype) for name, f in zip(hidden, read_view.hidden, strict=True)
        ]
        if view.is_aggregated:
            planned = ViewAggregations.of(view)
            aggregated.append(
                AggregatedRead(
                    view=view.name,
                    identity=ViewIdentity.of(state.view_record(view.name)),
                    keys=tuple(sorted((k, key_dtypes[k]) for k in view.join_keys)),
                    plan=planned,
                    specs=tuple(planned.spec(f) for f in read_view.features),
                    names=out + hidden,
                    codec=tile_codec(planned),
                    ttl_us=view.ttl_microseconds,
                )
            )
            continue
        read = ViewRead(
            view=view.name,
            identity=ViewIdentity.of(state.view_record(view.name)),
            codec=RowCodec(view.features),
            ttl_us=view.ttl_microseconds,
            positions=tuple(order.index(f) for f in read_view.features),
            names=out + hidden,
        )
        group = tuple(sorted((k, key_dtypes[k]) for k in view.join_keys))
        groups.setdefault(group, []).append(read)
    for t in split.transformations:
        owners += [(o.output, f"feature '{t.view}:{o.name}'") for o in t.outputs]
        features += [(o.output, o.dtype) for o in t.outputs]
    # The response holds the join keys, then the features: one name each (as offline).
    check_unique([(k, f"join key {k!r}") for k in join_keys] + owners, full_feature_names)
    return ReadPlan(
        join_keys=tuple(join_keys.items()),
        groups=tuple(GroupRead(keys, tuple(views)) for keys, views in groups.items()),
        features=tuple(features),
        transformations=split.transformations,
        inputs=tuple(inputs),
        aggregated=tuple(aggregated),
    )


def read_online(
    store: OnlineStore, plan: ReadPlan, entity_rows: EntityRows, now: datetime | None
) -> OnlineResponse:
    """Read ``plan``'s features for ``entity_rows`` (statuses: module docstring)."""
    n, columns, requests = _requests(plan, entity_rows)
    now_us = time.time_ns() // 1000 if now is None else timestamp_us(now)
    if plan.aggregated:
        shapes, tile_reads = _tile_reads(plan, columns, now_us)
        stored, answers = store.read_tiles(requests, tile_reads)
        return _response(plan, n, columns, stored, now_us, (shapes, answers))
    return _response(plan, n, columns, store.read(requests), now_us)


async def read_online_async(
    store: OnlineStore, plan: ReadPlan, entity_rows: EntityRows, now: datetime | None
) -> OnlineResponse:
    """``read_online`` for an event loop: the same keys, store call and decoder, with the
    store's round trip awaited (``OnlineStore.read_async``) instead of blocking the loop."""
    n, columns, requests = _requests(plan, entity_rows)
    now_us = time.time_ns() // 1000 if now is None else timestamp_us(now)
    if plan.aggregated:
        shapes, tile_reads = _tile_reads(plan, columns, now_us)
        stored, answers = await store.read_tiles_async(requests, tile_reads)
        return _response(plan, n, columns, stored, now_us, (shapes, answers))
    return _response(plan, n, columns, await store.read_async(requests), now_us)


def _requests(
    plan: ReadPlan, entity_rows: EntityRows
) -> tuple[int, dict[str, list[Any]], list[KeyGroup]]:
    """The checked key columns (and request fields, under their names), and the store's
    request: per group, its views and keys."""
    if plan.transformations and not isinstance(entity_rows, Mapping):
        entity_rows = listed_rows(entity_rows)  # read twice
    n, columns = key_columns(plan, entity_rows)
    requests = [KeyGroup(g.identities, entity_keys(g, columns)) for g in plan.groups]
    if plan.transformations:
        columns = {**request_columns(plan, entity_rows, n), **columns}
    return n, columns, requests


def _tile_reads(
    plan: ReadPlan, columns: dict[str, list[Any]], now_us: int
) -> tuple[list[ReadShape], list[TileRead]]:
    """The tiles each aggregated view of the request needs at ``now``, for its keys."""
    shapes = [ReadShape.at(a.plan, a.windows, now_us) for a in plan.aggregated]
    reads = [
        TileRead(a.identity, entity_keys(a, columns), shape.tiles)
        for a, shape in zip(plan.aggregated, shapes, strict=True)
    ]
    return shapes, reads


def _response(
    plan: ReadPlan,
    n: int,
    columns: dict[str, list[Any]],
    stored: list[list[bytes | None]],
    now_us: int,
    tiles: tuple[list[ReadShape], list[TileAnswer]] = ([], []),
) -> OnlineResponse:
    """Decode the store's rows and tiles into the response (values, statuses, event times)."""
    values: dict[str, list[Any]] = {}
    statuses: dict[str, list[str]] = {}
    event_us: dict[str, list[int | None]] = {}
    stored_rows: dict[str, list[bytes | None]] = {}
    for read, shape, found in zip(plan.aggregated, *tiles, strict=True):
        _answer_view(read, shape, found, now_us, values, statuses, event_us)
        stored_rows.update(dict.fromkeys(read.names, [None] * n))  # tiles have no created time
    start = 0
    for group in plan.groups:
        rows = stored[start : start + n]
        start += n
        for j, view in enumerate(group.views):
            view_rows = [r[j] for r in rows]
            _decode_view(view, view_rows, now_us, values, statuses, event_us)
            stored_rows.update(dict.fromkeys(view.names, view_rows))
    if plan.transformations:
        _transform(plan, n, columns, values, statuses, event_us, stored_rows)
    names = [name for name, _ in (*plan.features, *plan.inputs)]
    key_dtypes = dict(plan.join_keys)
    keys = [(name, key_dtypes[name]) for name in columns if name in key_dtypes]  # given order
    return OnlineResponse(
        keys,
        plan.features,
        {name: columns[name] for name, _ in keys},
        {name: values[name] for name in names},
        {name: statuses[name] for name in names},
        {name: event_us[name] for name in names},
        {name: stored_rows[name] for name in names},
        inputs=plan.inputs,
        request_fields=plan.request_fields,
        request_values={name: columns[name] for name, _ in plan.request_fields},
    )


def _transform(
    plan: ReadPlan,
    n: int,
    columns: dict[str, list[Any]],
    values: dict[str, list[Any]],
    statuses: dict[str, list[str]],
    event_us: dict[str, list[int | None]],
    stored_rows: dict[str, list[bytes | None]],
) -> None:
    """Add the transformations' outputs: computed from the values read and the request
    fields by ``transforms.transform``; PRESENT or NULL_VALUE, no event time, no row."""
    computed = transform(plan.transformations, {**columns, **values}, n)
    missing: list[Any] = [None] * n
    for name, array in computed.items():
        column = array.to_pylist()
        values[name] = column
        statuses[name] = [NULL_VALUE if v is None else PRESENT for v in column]
        event_us[name] = missing
        stored_rows[name] = missing


def _decode_view(
    view: ViewRead,
    rows: list[bytes | None],
    now_us: int,
    values: dict[str, list[Any]],
    statuses: dict[str, list[str]],
    event_us: dict[str, list[int | None]],
) -> None:
    """Set one view's value, status and event-time columns (one entry per entity row)."""
    found = [i for i, row in enumerate(rows) if row is not None]
    events: list[Any]  # int µs, or None where there is no row
    columns: list[list[Any]]
    if len(found) == len(rows):
        events, columns = view.codec.decode_columns(rows, view.positions)  # type: ignore[arg-type]  # no None in rows here
    else:  # decode what exists, then put it back in place among the missing rows
        stored = [row for row in rows if row is not None]
        present, decoded = view.codec.decode_columns(stored, view.positions)
        events = [None] * len(rows)
        columns = [[None] * len(rows) for _ in view.positions]
        for j, i in enumerate(found):
            events[i] = present[j]
            for column, source in zip(columns, decoded, strict=True):
                column[i] = source[j]
    oldest = None if view.ttl_us is None else now_us - view.ttl_us
    # per row: None when the row's values count, else the status every feature gets
    row_status = [
        NOT_FOUND if e is None else (OUTSIDE_MAX_AGE if oldest is not None and e < oldest else None)
        for e in events
    ]
    complete = not any(row_status)
    for name, column in zip(view.names, columns, strict=True):
        if complete:
            status = [NULL_VALUE if v is None else PRESENT for v in column]
        else:
            column = [None if s else v for s, v in zip(row_status, column, strict=True)]
            status = [
                s or (NULL_VALUE if v is None else PRESENT)
                for s, v in zip(row_status, column, strict=True)
            ]
        values[name] = column
        statuses[name] = status
        event_us[name] = events  # type: ignore[assignment]  # list[int] where no row is missing


def _answer_view(
    read: AggregatedRead,
    shape: ReadShape,
    found: TileAnswer,
    now_us: int,
    values: dict[str, list[Any]],
    statuses: dict[str, list[str]],
    event_us: dict[str, list[int | None]],
) -> None:
    """Set an aggregated view's value, status and covered-end columns (one per entity row)."""
    n = len(found.rows)
    if found.end is None:  # never materialized (for this definition): nothing is known
        for name in read.names:
            values[name], statuses[name], event_us[name] = [None] * n, [NOT_FOUND] * n, [None] * n
        return
    end_us = timestamp_us(found.end)
    if now_us < end_us:
        raise MaterializedAheadError(
            f"feature view {read.view!r} is materialized up to {found.end.isoformat()}, after "
            f"now={from_us(now_us).isoformat()}: its tiles hold later events, so its "
            "aggregations cannot be answered at that time; read at or after the covered end "
            "(get_historical_features answers any time)"
        )
    if read.ttl_us is not None and now_us - end_us > read.ttl_us:
        for name in read.names:
            values[name] = [None] * n
            statuses[name] = [OUTSIDE_MAX_AGE] * n
            event_us[name] = [end_us] * n
        return
    columns: list[list[Any]] = [[] for _ in read.names]
    for entity_rows in found.rows:
        decoded = _decode_tiles(read, entity_rows)
        try:
            answered = answer(read.plan, shape, read.specs, decoded)
        except SumOverflow as exc:
            raise RetrievalError(
                f"feature view {read.view!r}: a sum of Int64 column {exc.column!r} overflows "
                "Int64 for this entity; aggregate a Float64 column instead"
            ) from None
        for column, spec, (value, null) in zip(columns, read.specs, answered, strict=True):
            if null:
                column.append(None)
            elif spec.output.name == "UnixTimestamp" and spec.function != "last":
                column.append(from_us(value))
            else:
                column.append(value)
    for name, column in zip(read.names, columns, strict=True):
        values[name] = column
        statuses[name] = [NULL_VALUE if v is None else PRESENT for v in column]
        event_us[name] = [end_us] * n


def _decode_tiles(read: AggregatedRead, rows: list[bytes | None]) -> list[dict[str, Any] | None]:
    """An entity's tiles (in the read shape's order) as field -> value dicts (None: absent).
    A min or max without a value reads as 0, the number the offline path holds there."""
    present = [row for row in rows if row is not None]
    if not present:
        return [None] * len(rows)
    names = read.plan.layout.field_names
    _, columns = read.codec.decode_columns(present, range(len(names)))
    # equal lengths by construction (the codec's own fields); this runs for every tile read
    tiles = [dict(zip(names, values, strict=False)) for values in zip(*columns, strict=False)]
    for name in names:
        if name.startswith(("min", "max")):
            for tile in tiles:
                if tile[name] is None:
                    tile[name] = 0
    decoded = iter(tiles)
    return [None if row is None else next(decoded) for row in rows]


class OnlineReader:
    """``get_online_features`` for one repo: caches the registry and compiled read plans.

    The applied registry is re-read only when its file changes (size or mtime), so a
    long-running server sees ``apply`` without paying a JSON parse per request.
    """

    def __init__(
        self,
        store: OnlineStore,
        registry_path: os.PathLike[str] | str,
        load_state: Callable[[], RegistryState],
        repo_path: Path | None = None,
    ) -> None:
        self.store = store
        self.repo_path = repo_path  # where on-demand views' functions are imported from
        self._registry_path = registry_path
        self._load_state = load_state
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._state: RegistryState | None = None
        self._plans: dict[tuple[Any, ...], tuple[ReadPlan, FeatureService | None]] = {}

    def state(self) -> RegistryState:
        """The applied registry, reloaded when its file changed."""
        try:
            st = os.stat(self._registry_path)
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp or self._state is None:
            with self._lock:
                self._state = self._load_state()
                self._plans = {}
                self._stamp = stamp
        return self._state

    def plan(
        self,
        features: Sequence[str] | FeatureService | str,
        full_feature_names: bool,
    ) -> tuple[ReadPlan, FeatureService | None]:
        """The compiled plan for a request shape, and the feature service if one was named."""
        state = self.state()
        # The first item says what the rest is, so no request can take another's plan.
        if isinstance(features, FeatureService):
            # Keyed by its features too: resolve() refuses an object that differs from the
            # applied service, and the cache must not let a stale object skip that check.
            refs = tuple(features.refs)
            cache_key: tuple[Any, ...] = ("object", features.name, refs, full_feature_names)
        elif isinstance(features, str):
            cache_key = ("service", features, full_feature_names)
        elif isinstance(features, Sequence) and all(isinstance(ref, str) for ref in features):
            cache_key = ("refs", tuple(features), full_feature_names)
        else:
            if isinstance(features, Sequence):
                state.resolve(features)  # raises, naming the reference that is not a string
            raise RetrievalError(
                "features must be a list of 'view:feature' references, a FeatureService or "
                f"a service name, not {type(features).__name__}"
            )
        found = self._plans.get(cache_key)
        if found is None:
            projections, service = state.resolve(features)
            found = (
                compile_plan(state, projections, full_feature_names, self.repo_path),
                service,
            )
            if len(self._plans) >= MAX_PLANS:  # many ad-hoc feature lists: start over
                self._plans = {}
            self._plans[cache_key] = found
        return found

    def get_online_features(
        self,
        features: Sequence[str] | FeatureService | None = None,
        entity_rows: EntityRows | None = None,
        *,
        feature_service: str | FeatureService | None = None,
        full_feature_names: bool = False,
        now: datetime | None = None,
    ) -> OnlineResponse:
        """See ``FeatureStore.get_online_features``."""
        if (features is None) == (feature_service is None):
            raise RetrievalError("pass exactly one of features= or feature_service=")
        if entity_rows is None:
            raise RetrievalError("pass entity_rows=[{'<join key>': value, ...}, ...]")
        if now is not None:
            now = check_time(now, "now", RetrievalError)
        plan, _ = self.plan(
            feature_service if feature_service is not None else features,  # type: ignore[arg-type]  # exactly one is None, checked above
            full_feature_names,
        )
        return read_online(self.store, plan, entity_rows, now)
