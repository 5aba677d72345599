"""Scoring over the online store: the model's features read as ``get_online_features`` reads
them, turned into model input by ``build_matrix``, scored; and whether the model may be served.

``OnlineModel.score`` reads the model's feature service (full feature names: the training
set's column names) through the same compiled read plan and decoder as the SDK, at one
``now`` that it returns, so a caller can log exactly the time the ttl check used.

A model is *servable* when the registry still matches its binding (the feature service's
fingerprint) and every view it reads has been materialized into this store (its watermark
exists: an ``apply`` that changed a view dropped its rows and watermark, and so does any other
reset), and no aggregated view it reads is materialized past the current time (its tiles
then hold events that have not happened: no read can answer it before that end). Otherwise
``require_servable`` raises ``ModelNotServable`` naming the view, instead of scoring a vector
of nulls (or failing every read). The binding is re-checked whenever the registry file changes (the
reader notices it on every call); watermarks are re-read (all in one round trip) at most
every ``refresh_seconds``, at once after a registry change, and at once when a read finds no
row of a view for any entity of the request (its data may have been dropped, or the store
restarted empty, since). ``status`` adds what readiness needs: the store answering, and each
view's materialization lag within ``max_lag``.

On an event loop (``require_servable_async``, ``score_async``) the re-read is awaited, and
concurrent requests share one: a request that must re-check joins a read already in flight
if that read started after its own data read did (so it sees any drop its data read saw),
else starts one. A stream of requests for unknown entities thus costs one watermark read per
round trip, not one blocking read per request.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from featurestore.errors import ModelNotServable, OnlineStoreError
from featurestore.models.matrix import build_matrix
from featurestore.online.codec import from_us
from featurestore.online.read import read_online, read_online_async
from featurestore.online.response import NOT_FOUND

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from featurestore.config import RepoConfig
    from featurestore.models.artifact import ModelArtifact
    from featurestore.models.binding import Binding
    from featurestore.online.base import OnlineStore, Watermark
    from featurestore.online.read import OnlineReader, ReadPlan
    from featurestore.online.response import OnlineResponse
    from featurestore.registry import Registry
    from featurestore.registry_state import RegistryState

REFRESH_SECONDS = 1.0


def load_online_model(
    model: Path, config: RepoConfig, store: OnlineStore, registry: Registry
) -> OnlineModel:
    """The model at ``model`` over ``store``, refused unless it can be served: a
    ``ModelError`` unless the registry matches its binding, the import error of an on-demand
    view's function, a ``RetrievalError`` when the feature log cannot hold what it serves
    (``feature_log.log_columns``). The prediction service loads it so (at start and on
    SIGHUP), and ``featurestore serve`` checks it so before starting the server."""
    from featurestore import models
    from featurestore.feature_log import log_columns
    from featurestore.online.read import OnlineReader

    artifact = models.load(model)
    reader = OnlineReader(store, config.registry_path, registry.require, config.repo_path)
    served = OnlineModel(artifact, reader)
    served.binding().require()
    log_columns(served.plan())  # the plan imports on-demand views' functions
    return served


@dataclass(frozen=True)
class Scored:
    """One scoring call: the online response the model read, its predictions, and ``now``."""

    response: OnlineResponse
    plan: ReadPlan
    predictions: np.ndarray
    now_us: int

    @property
    def now(self) -> datetime:
        return from_us(self.now_us)


@dataclass(frozen=True)
class ServingStatus:
    """Whether the model can be served, and every reason it cannot (empty: ready)."""

    binding: Binding | None
    watermarks: dict[str, Watermark | None] = field(default_factory=dict)
    problems: tuple[tuple[str, str], ...] = ()  # (check, what is wrong and what to do)

    @property
    def ok(self) -> bool:
        return not self.problems


class OnlineModel:
    """A loaded model artifact served from an ``OnlineReader`` (module docstring)."""

    def __init__(
        self,
        artifact: ModelArtifact,
        reader: OnlineReader,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.artifact = artifact
        self.reader = reader
        self.service = artifact.metadata.feature_service
        # the feature views whose materialized data it reads (an on-demand view's sources)
        self.views = tuple(dict.fromkeys(r for v in artifact.metadata.views for r in v.reads))
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._state: RegistryState | None = None
        self._binding: Binding | None = None
        self._watermarks: dict[str, Watermark | None] | None = None
        self._checked_at = 0.0  # time.monotonic() when the held watermarks' read started
        self._not_before = 0.0  # held watermarks read before this are stale (a registry change)
        self._refresh: asyncio.Task[dict[str, Watermark | None]] | None = None
        self._refresh_started = 0.0

    @property
    def name(self) -> str:
        """The model's name: its artifact folder's name."""
        return self.artifact.path.name if self.artifact.path else self.service

    @property
    def fingerprint(self) -> str:
        """The feature-service fingerprint the model is bound to."""
        return self.artifact.metadata.service_fingerprint

    @property
    def sha256(self) -> str:
        """The model file's checksum: which trained model exactly."""
        return self.artifact.metadata.model_sha256

    def binding(self) -> Binding:
        """The binding against the registry as applied now (re-checked when it changes)."""
        state = self.reader.state()
        if state is not self._state or self._binding is None:
            with self._lock:
                self._binding = self.artifact.binding(state)
                self._state = state
                self._not_before = time.monotonic()  # a registry change: re-read at once
        return self._binding

    def watermarks_changed(self) -> None:
        """This process moved a watermark (a materialization it ran): re-read them at once."""
        self._not_before = time.monotonic()

    def watermarks(self) -> dict[str, Watermark | None]:
        """Each view's watermark, at most ``refresh_seconds`` old (raises when the store is
        unreachable)."""
        now = time.monotonic()
        if self._stale(now, self._not_before):
            marks = self.reader.store.get_watermarks(self.views)
            self._keep(marks, now)
        assert self._watermarks is not None
        return self._watermarks

    async def watermarks_async(
        self, started_after: float | None = None
    ) -> dict[str, Watermark | None]:
        """``watermarks`` on an event loop (module docstring). ``started_after``: a
        ``time.monotonic()``; the answer then comes from a read started at or after it."""
        after = max(started_after or 0.0, self._not_before)
        if not self._stale(time.monotonic(), after):
            assert self._watermarks is not None
            return self._watermarks
        after = max(after, self._checked_at)  # at least newer than what is held
        loop = asyncio.get_running_loop()
        refresh = self._refresh
        if refresh is None or refresh.get_loop() is not loop or self._refresh_started < after:
            started = time.monotonic()
            refresh = loop.create_task(self._read_watermarks(started))
            self._refresh, self._refresh_started = refresh, started
        return await asyncio.shield(refresh)

    def _stale(self, now: float, after: float) -> bool:
        """Whether the held watermarks are missing, too old, or read before ``after``."""
        return (
            self._watermarks is None
            or self._checked_at < after
            or now - self._checked_at >= self.refresh_seconds
        )

    def _keep(self, marks: dict[str, Watermark | None], started: float) -> None:
        """Hold ``marks`` (read from ``started`` on) unless a newer read is held (locked:
        ``/ready`` reads them in a worker thread while the loop may too)."""
        with self._lock:
            if started >= self._checked_at or self._watermarks is None:
                self._watermarks, self._checked_at = marks, started

    async def _read_watermarks(self, started: float) -> dict[str, Watermark | None]:
        try:
            marks = await self.reader.store.get_watermarks_async(self.views)
        finally:
            if self._refresh_started == started:
                self._refresh = None
        self._keep(marks, started)
        return marks

    def require_servable(self) -> None:
        """Raise ``ModelNotServable`` naming what is wrong, unless the model may be scored."""
        binding = self.binding()  # first: a registry change makes the watermarks stale
        self._require(binding, self.watermarks())

    async def require_servable_async(self, started_after: float | None = None) -> None:
        """``require_servable`` on an event loop, its watermark read awaited and shared."""
        binding = self.binding()  # first: a registry change makes the watermarks stale
        self._require(binding, await self.watermarks_async(started_after))

    def _require(self, binding: Binding, marks: Mapping[str, Watermark | None]) -> None:
        mismatch = binding.mismatch()
        if mismatch is not None:
            raise ModelNotServable(f"model {self.name} is not served: {mismatch}")
        missing = [view for view, mark in marks.items() if mark is None]
        if missing:
            raise ModelNotServable(_not_materialized(self.name, missing))
        ahead = self._ahead(marks, datetime.now(UTC))
        if ahead:
            raise ModelNotServable(_materialized_ahead(self.name, ahead))

    def _ahead(self, marks: Mapping[str, Watermark | None], now: datetime) -> dict[str, datetime]:
        """The aggregated views materialized past ``now`` (their end): their tiles hold
        events that have not happened, so no read can answer them before that end."""
        ends = {view: mark.end for view, mark in marks.items() if mark is not None}
        later = {view: end for view, end in ends.items() if end > now}
        if not later:  # every /predict asks: the registry only when some end is after now
            return {}
        views = self.reader.state().views
        return {v: end for v, end in later.items() if v in views and views[v].view.is_aggregated}

    def status(self, max_lag: timedelta | None = None) -> ServingStatus:
        """Every readiness check: store answering, binding, views materialized and fresh."""
        problems: list[tuple[str, str]] = []
        binding = self.binding()
        mismatch = binding.mismatch()
        if mismatch is not None:
            problems.append(("binding", mismatch))
        marks: dict[str, Watermark | None] = {}
        try:
            self.reader.store.ping()
            marks = self.watermarks()
        except OnlineStoreError as exc:
            problems.append(("online_store", str(exc)))
        missing = [view for view, mark in marks.items() if mark is None]
        if missing:
            problems.append(("materialized", _not_materialized(self.name, missing)))
        now = datetime.now(UTC)
        ahead = self._ahead(marks, now)
        if ahead:
            problems.append(("materialized", _materialized_ahead(self.name, ahead)))
        if max_lag is not None:
            for view, mark in marks.items():
                if mark is not None and now - mark.end > max_lag:
                    problems.append(
                        (
                            "lag",
                            f"view {view!r} was last materialized up to {mark.end.isoformat()}, "
                            f"{now - mark.end} ago (serving.max_lag is {max_lag}): run "
                            "'featurestore materialize-incremental now'",
                        )
                    )
        return ServingStatus(binding, marks, tuple(problems))

    def plan(self) -> ReadPlan:
        """The compiled read plan of the model's feature service (cached by the reader)."""
        return self.reader.plan(self.service, True)[0]

    def score(self, entity_rows: Mapping[str, Sequence[Any]]) -> Scored:
        """Read the model's features for ``entity_rows`` at the current time and score them.

        Call ``require_servable`` first; key errors raise ``RetrievalError`` as in
        ``get_online_features``.
        """
        plan, now_us = self.plan(), time.time_ns() // 1000
        response = read_online(self.reader.store, plan, entity_rows, from_us(now_us))
        if _a_view_found_nothing(plan, response):
            # maybe its data was just dropped (or the store restarted empty) since the
            # watermarks were last read: check now
            self.watermarks_changed()
            self.require_servable()
        return self._scored(plan, response, now_us)

    async def score_async(self, entity_rows: Mapping[str, Sequence[Any]]) -> Scored:
        """``score`` on an event loop: the store's round trip is awaited."""
        plan, now_us = self.plan(), time.time_ns() // 1000
        read_started = time.monotonic()
        response = await read_online_async(self.reader.store, plan, entity_rows, from_us(now_us))
        if _a_view_found_nothing(plan, response):
            await self.require_servable_async(started_after=read_started)
        return self._scored(plan, response, now_us)

    def _scored(self, plan: ReadPlan, response: OnlineResponse, now_us: int) -> Scored:
        matrix = build_matrix(response.to_dict(), self.artifact.features)
        import numpy as np

        predictions = np.asarray(self.artifact.booster.predict(matrix, num_threads=1))
        return Scored(response, plan, predictions, now_us)


def _a_view_found_nothing(plan: ReadPlan, response: OnlineResponse) -> bool:
    """Whether some view read no row for any entity of the request (of at least one row)."""
    return any(
        statuses and statuses[0] == NOT_FOUND and len(set(statuses)) == 1
        for statuses in (response.statuses[names[0]] for _, names, _ in plan.views_read)
    )


def _materialized_ahead(model: str, ahead: Mapping[str, datetime]) -> str:
    views = ", ".join(f"{view!r} (up to {end.isoformat()})" for view, end in ahead.items())
    return (
        f"model {model} reads aggregated view(s) {views}, materialized past the current time "
        "(materialize was given an end in the future): no value can be answered before that "
        "end; to serve sooner, its online data must be dropped (an apply that changes the "
        "view drops it) and materialized up to now"
    )


def _not_materialized(model: str, views: list[str]) -> str:
    names = ", ".join(repr(v) for v in views)
    return (
        f"model {model} reads view(s) {names}, which have no materialized data in this online "
        "store (never materialized, or dropped by an apply that changed them): run "
        "'featurestore materialize' for them"
    )
