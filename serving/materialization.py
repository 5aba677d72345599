"""Feast's ``/materialize`` and ``/materialize-incremental``: the SDK's runs
(featurestore/materialize.py) started over HTTP, into the service's own online store, with
the registry as the service last loaded it.

A run is synchronous (the answer is its report) or, with ``?async=true``, started in a
background thread (202 and Feast's body). Each worker process knows the runs it started: an
asynchronous run of a view this worker is materializing already is refused with 409 (Feast's
rule; ``?force=true`` starts it anyway). Overlapping runs are safe either way, which is why
a synchronous run never waits or refuses: rows never regress and a watermark only moves
forward, so ``force`` and runs started elsewhere (another worker, the CLI) cost time, never
correctness. A failed run moved no watermark, and re-running is idempotent. A background
run's outcome is logged and counted (``featurestore_materializations_total``); a shutdown
interrupts it, which is as safe as any failure, and says so.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from featurestore.errors import FeatureStoreError

if TYPE_CHECKING:
    from featurestore.config import RepoConfig
    from featurestore.materialize import MaterializationReport
    from featurestore.online.base import OnlineStore
    from featurestore.registry_state import RegistryState
    from serving.metrics import Metrics

log = logging.getLogger("featurestore.serving")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # Feast's start for disable_event_timestamp
MATERIALIZE = "materialize"
INCREMENTAL = "materialize-incremental"


@dataclass(frozen=True)
class MaterializeRun:
    """One requested run: ``kind`` is MATERIALIZE (``start`` to ``end``) or INCREMENTAL
    (since each view's watermark, to ``end``); ``views`` None means every online view."""

    kind: str
    end: datetime
    views: Sequence[str] | None = None
    start: datetime | None = None

    def describe(self) -> str:
        window = f"{self.start.isoformat()} to " if self.start is not None else "to "
        return f"{self.kind} {window}{self.end.isoformat()}"


class MaterializationInProgress(FeatureStoreError):
    """An asynchronous run asked for views this worker is materializing already (409)."""

    def __init__(self, views: Sequence[str]) -> None:
        super().__init__(
            f"feature views {', '.join(views)} are being materialized by this worker already; "
            "wait for that run, or pass ?force=true to start another (overlapping runs are "
            "safe: rows never regress)"
        )
        self.views = list(views)


class Materializer:
    """The runs one worker process started (module docstring)."""

    def __init__(
        self,
        config: RepoConfig,
        store: OnlineStore,
        state: Callable[[], RegistryState],
        metrics: Metrics,
        written: Callable[[], None],
    ) -> None:
        self.config = config
        self.store = store
        self.state = state
        self.metrics = metrics
        self.written = written  # called after every run: watermarks may have moved
        self._lock = threading.Lock()
        self._running: Counter[str] = Counter()  # view -> runs of it in progress here

    def views(self, names: Sequence[str] | None) -> list[str]:
        """The online views a run of ``names`` covers (every online view when None);
        ``UnknownFeatureError`` (404) names an unknown one."""
        from featurestore.materialize import online_views

        chosen, _ = online_views(self.state(), names)
        return [view.name for view in chosen]

    def run(self, request: MaterializeRun) -> MaterializationReport:
        """Run it in this thread (blocking: the route calls it in a worker thread)."""
        views = self.views(request.views)
        self._enter(views)
        try:
            return self._run(request)
        finally:
            self._leave(views)

    def start(self, request: MaterializeRun, force: bool) -> list[str]:
        """Start it in a background thread; the views it covers. ``MaterializationInProgress``
        unless ``force`` when one of them is being materialized by this worker."""
        views = self.views(request.views)
        with self._lock:
            busy = [v for v in views if self._running[v]]
            if busy and not force:
                raise MaterializationInProgress(busy)
            self._running.update(views)
        try:
            threading.Thread(
                target=self._background, args=(request, views), name=request.kind, daemon=True
            ).start()
        except BaseException:
            self._leave(views)
            raise
        return views

    def running(self) -> list[str]:
        """The views this worker is materializing now."""
        with self._lock:
            return sorted(v for v, n in self._running.items() if n)

    def _run(self, request: MaterializeRun) -> MaterializationReport:
        from featurestore.materialize import materialize, materialize_incremental

        log.info("HTTP %s: %s", request.describe(), ", ".join(request.views or ["every view"]))
        try:
            if request.kind == INCREMENTAL:
                report = materialize_incremental(
                    self.config, self.state(), self.store, request.end, views=request.views
                )
            else:
                assert request.start is not None
                report = materialize(
                    self.config,
                    self.state(),
                    self.store,
                    request.start,
                    request.end,
                    views=request.views,
                )
        except BaseException:
            self.metrics.materializations.labels(request.kind, "failed").inc()
            raise
        finally:
            self.written()  # views finished before a failure moved theirs too
        self.metrics.materializations.labels(request.kind, "succeeded").inc()
        for view in report.runs:
            log.info(
                "HTTP %s: feature view %s: %d rows read, %d written in %.1f s",
                request.kind,
                view.view,
                view.rows_read,
                view.rows_written,
                view.seconds,
            )
        return report

    def _background(self, request: MaterializeRun, views: list[str]) -> None:
        try:
            self._run(request)
        except FeatureStoreError as exc:
            log.error("HTTP %s (in the background) failed: %s", request.describe(), exc)
        except Exception:
            log.exception("HTTP %s (in the background) failed unexpectedly", request.describe())
        finally:
            self._leave(views)

    def _enter(self, views: list[str]) -> None:
        with self._lock:
            self._running.update(views)

    def _leave(self, views: list[str]) -> None:
        with self._lock:
            self._running.subtract(views)
