"""Materialization: window -> latest row per key -> write online -> then move the watermark.

First, every chosen view is claimed in the online store for its applied definition (its
fingerprint and row layout; featurestore/online/base.py): data the store holds for another
definition, or from before layout ids, is dropped there, so the registry is the truth. The
claims are made under the registry's lock, and refused when an ``apply`` changed a view
after the run read the registry (``claim_applied``). Then
for each online feature view, in turn:

1. read from the offline engine the latest source row per entity key among the candidate
   rows (``read_latest``: the same tie-break as the point-in-time join, streamed as Arrow
   record batches);
2. write them through the online store's never-regress write, batch by batch (a stored row
   with a greater ``(event_ts, created_ts)`` is kept; an equal one is rewritten);
3. only after every batch is written, store the view's watermark: the end of the run and the
   greatest created time written.

A failure in step 1 or 2 raises ``MaterializationError`` naming the view and leaves its
watermark where it was. That includes an ``apply`` that changes or removes a view while the
run writes it: the store refuses every later write and the watermark of the claim the run
holds (atomically with the write), so old-layout rows never mix with the new definition's;
the next run writes the new definition from scratch. Re-running is idempotent: the never-regress write turns rows that
were already written into no-ops, so a run interrupted at any point (even by SIGKILL) and
run again leaves the store exactly as one clean run would.

An aggregated view (featurestore/aggregations/materialize.py) writes tiles instead of rows,
from the events before the run's end (exclusive), so that ``online(now=end)`` equals the
training set at ``end``; its watermark and claims work the same way.

Candidate rows, both ends inclusive:

* ``materialize(start, end)``: ``start <= event_ts <= end``.
* ``materialize_incremental(end)`` with a stored watermark ``(last_end, max_created)``:
  ``event_ts <= end`` and (``event_ts > last_end`` or ``created_ts > max_created``). The
  second branch takes late rows (an old event time that arrived after the last run, seen
  through its created time), which Feast skips. Without a watermark: every row with
  ``event_ts <= end``. Never a row after ``end``.

Timestamps are microsecond-precision UTC; naive datetimes are read as UTC.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from featurestore.columns import CREATED_TS
from featurestore.errors import FeatureStoreError, MaterializationError, RegistryError
from featurestore.types import FUTURE_ALLOWANCE, MAX_TIME, as_utc, check_time

if TYPE_CHECKING:
    import pyarrow as pa

    from featurestore.config import RepoConfig
    from featurestore.definitions import FeatureView
    from featurestore.offline.engine import OfflineEngine
    from featurestore.online.base import Claim, OnlineStore, ViewIdentity, Watermark
    from featurestore.registry import Registry
    from featurestore.registry_state import RegistryState

log = logging.getLogger("featurestore.materialize")

ONE_MICROSECOND = timedelta(microseconds=1)
BATCH_ROWS = 65_536  # entity rows per batch read and written


@dataclass(frozen=True)
class Window:
    """The candidate rows of one view's run: ``start <= event_ts <= end``, plus late rows.

    ``start=None`` means no lower bound; ``created_after`` (when set) also admits rows with
    ``event_ts <= end`` and ``created_ts > created_after``, whatever their event time. For
    an aggregated view the end is exclusive (``event_ts < end``): see
    featurestore/aggregations/materialize.py.
    """

    end: datetime
    start: datetime | None = None
    created_after: datetime | None = None

    def describe(self) -> str:
        lower = f"{self.start.isoformat()} <= " if self.start else ""
        text = f"{lower}event_ts <= {self.end.isoformat()}"
        if self.created_after is not None:
            text += f", plus late rows created after {self.created_after.isoformat()}"
        return text


@dataclass(frozen=True)
class ViewRun:
    """What one view's run did: rows read (one per entity key), rows written, time taken."""

    view: str
    window: Window
    rows_read: int
    rows_written: int
    seconds: float
    watermark: Watermark

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class MaterializationReport:
    """The outcome of a run: one ``ViewRun`` per materialized view, and the views skipped."""

    runs: list[ViewRun]
    skipped: list[str]

    @property
    def rows_written(self) -> int:
        return sum(r.rows_written for r in self.runs)


class Progress:
    """Hooks a caller (the CLI's progress bar) receives; the default does nothing."""

    def view_started(self, view: str, window: Window) -> None:
        """A view's run begins."""

    def batch_written(self, view: str, rows_read: int, rows_written: int) -> None:
        """One batch of ``rows_read`` entity rows went through the store's write."""

    def view_finished(self, run: ViewRun) -> None:
        """A view's data is written and its watermark moved."""


def online_views(
    state: RegistryState, names: Sequence[str] | None
) -> tuple[list[FeatureView], list[str]]:
    """The views to materialize (all applied ones when ``names`` is None) and those skipped.

    Unknown names raise ``UnknownFeatureError``; views declared with ``online=False`` are
    skipped (and listed as such); a name given twice runs once.
    """
    chosen = (
        [state.view(n) for n in dict.fromkeys(names)]
        if names is not None
        else [state.views[n].view for n in sorted(state.views)]
    )
    return [v for v in chosen if v.online], [v.name for v in chosen if not v.online]


def materialize(
    config: RepoConfig,
    state: RegistryState,
    store: OnlineStore,
    start: datetime,
    end: datetime,
    *,
    views: Sequence[str] | None = None,
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
    engine: OfflineEngine | None = None,
) -> MaterializationReport:
    """Write to ``store`` the latest row per entity key with ``start <= event_ts <= end``.

    Each view's watermark then becomes ``(max(previous end, end), greatest created time
    written)`` (``next_watermark``: an ``end`` before the previous end keeps the created
    time): as in Feast, later incremental runs continue from ``end`` even when ``start``
    left older rows out (for everything, start early or use ``materialize_incremental``).
    ``end`` before ``start`` is a ``MaterializationError``. ``batch_rows``: entity rows per
    batch read and written; ``engine``: the offline engine (default: the configured one,
    ``offline.engine.open_offline_engine``).
    """
    start = check_time(start, "materialize: start", MaterializationError)
    end = _up_to_now(check_time(end, "materialize: end", MaterializationError), "materialize")
    if end < start:
        raise MaterializationError(
            f"materialize: end {end.isoformat()} is before start {start.isoformat()}; "
            "swap them (both ends are inclusive)"
        )
    run = _Run(config, state, store, _engine(engine, config), progress or Progress(), batch_rows)
    return run.views(views, lambda view, mark: materialize_window(view, mark, start, end))


def materialize_incremental(
    config: RepoConfig,
    state: RegistryState,
    store: OnlineStore,
    end: datetime,
    *,
    views: Sequence[str] | None = None,
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
    engine: OfflineEngine | None = None,
) -> MaterializationReport:
    """Write what arrived since each view's watermark, up to ``end`` (inclusive).

    Rows with ``event_ts <= end`` newer than the last run's end, or created after the
    greatest created time written (late rows); without a watermark, everything up to ``end``.
    """
    end = check_time(end, "materialize-incremental: end", MaterializationError)
    end = _up_to_now(end, "materialize-incremental")
    run = _Run(config, state, store, _engine(engine, config), progress or Progress(), batch_rows)
    return run.views(views, lambda view, mark: incremental_window(view, mark, end))


def _up_to_now(end: datetime, what: str) -> datetime:
    """``end``, unless it is after the current time (by more than ``FUTURE_ALLOWANCE``): a
    ``MaterializationError`` saying why. Rows dated after now would be served before they
    happen, a watermark never moves back (later incremental runs would skip every row dated
    before that end), and an aggregated view could not be read before it."""
    now = datetime.now(UTC)
    if end > now + FUTURE_ALLOWANCE:
        raise MaterializationError(
            f"{what}: end {end.isoformat()} is after the current time {now.isoformat()}: "
            "online would serve rows before they happen, and the watermark (which never moves "
            "back) would make later incremental runs skip rows dated before it; materialize "
            "up to now (a naive time is UTC: datetime.now() is local time east of UTC, "
            "datetime.now(timezone.utc) is now)"
        )
    return end


def _engine(engine: OfflineEngine | None, config: RepoConfig) -> OfflineEngine:
    if engine is not None:
        return engine
    from featurestore.offline.engine import open_offline_engine

    return open_offline_engine(config)


def materialize_window(
    view: FeatureView, mark: Watermark | None, start: datetime, end: datetime
) -> Window:
    """The candidate rows of ``materialize(start, end)``: ``start <= event_ts <= end``.

    An aggregated view's run starts no later than its longest window (plus its slide) before
    ``end`` unless an earlier run's end reaches ``start``: every window read at ``end`` then
    has all its events online. A later start left the events before it out of the tiles, and
    reads served partial counts and sums as PRESENT values (offline counts them all).
    """
    if not view.is_aggregated or (mark is not None and last_end(mark) >= start):
        return Window(end, start)
    longest = max(a.time_window + (a.slide_interval or timedelta(0)) for a in view.aggregations)
    reach = as_utc(end) - longest  # the slide is always set (Aggregation's default)
    if start > reach:
        log.info(
            "aggregated view %s: materializing from %s, not %s: its windows at the end read "
            "events that far back",
            view.name,
            reach.isoformat(),
            start.isoformat(),
        )
        start = reach
    return Window(end, start)


def incremental_window(view: FeatureView, mark: Watermark | None, end: datetime) -> Window:
    """The candidate rows of an incremental run to ``end`` after watermark ``mark``.

    ``event_ts > last_end`` is ``event_ts >= last_end + 1 us`` (timestamps are microseconds).
    Re-reading a row at exactly ``last_end`` could let it replace an equal-timestamp row that
    wins offline by file order, so the boundary is excluded. An ``end`` at or before the last
    end reads only late rows.
    """
    if mark is None:
        return Window(end)
    # An aggregated view's runs cover events before their end (exclusive): the next one
    # starts at the last end itself.
    step = timedelta(0) if view.is_aggregated else ONE_MICROSECOND
    has_created = view.source.created_timestamp_column is not None
    created_after = mark.max_created if has_created else None
    if has_created and created_after is None:
        # Every row written so far had no created time: any created time is "late".
        created_after = datetime.min.replace(tzinfo=UTC)
    return Window(end, last_end(mark) + step, created_after)


def next_watermark(
    mark: Watermark | None, window: Window, seen_created: datetime | None
) -> Watermark:
    """A view's watermark after a run over ``window`` that read created times up to
    ``seen_created``: the later of the two ends, and the greatest created time written.

    A run that ends before the last end read the late rows up to its own end only: those
    between its end and the last end are still unread, and moving the greatest created time
    past them would make every later run skip them. Such a run keeps the created time.
    """
    from featurestore.online.base import Watermark

    end = covered_end(mark, window.end)
    if mark is None:
        return Watermark(end=end, max_created=seen_created)
    if as_utc(window.end) < end:
        return Watermark(end=end, max_created=mark.max_created)
    return Watermark(end=end, max_created=_later(mark.max_created, seen_created))


def covered_end(mark: Watermark | None, end: datetime) -> datetime:
    """The end a view is materialized to after a run to ``end``: never earlier than before."""
    return as_utc(end) if mark is None else max(last_end(mark), as_utc(end))


def last_end(mark: Watermark) -> datetime:
    """The watermark's end, at most ``MAX_TIME``: an older version could store an end past
    the accepted range (up to 9999-12-31), which means "everything" just the same."""
    return min(as_utc(mark.end), MAX_TIME)


@dataclass(frozen=True)
class _Run:
    """One materialization run: where to read and write, and who hears about progress."""

    config: RepoConfig
    state: RegistryState
    store: OnlineStore
    engine: OfflineEngine
    progress: Progress
    batch_rows: int

    def views(
        self,
        names: Sequence[str] | None,
        window_for: Callable[[FeatureView, Watermark | None], Window],
    ) -> MaterializationReport:
        """Claim every chosen view, then materialize each in turn; stop at the first failure.

        Claiming them all first ties the whole run to the definitions it loaded: an
        ``apply`` after that makes the store refuse the run's writes of the changed views.
        """
        from featurestore.online.base import ViewIdentity

        chosen, skipped = online_views(self.state, names)
        for name in skipped:
            log.info("skipped feature view %s: it is declared online=False", name)
        from featurestore.registry import Registry

        runs: list[ViewRun] = []
        claims: list[Claim] = []
        registry = Registry(self.config.registry_path, self.config.project)
        with registry.settled() as applied:
            for view in chosen:
                try:
                    identity = ViewIdentity.of(self.state.view_record(view.name))
                    claims.append(claim_applied(self.store, identity, applied, registry))
                except FeatureStoreError as exc:
                    raise _failed(view, runs, exc) from exc
        for view, claim in zip(chosen, claims, strict=True):
            try:
                mark = self.store.get_watermark(view.name)  # as late as possible: runs overlap
                runs.append(self.view(view, claim, window_for(view, mark), mark))
            except FeatureStoreError as exc:
                raise _failed(view, runs, exc) from exc
        return MaterializationReport(runs, skipped)

    def view(
        self, view: FeatureView, claim: Claim, window: Window, mark: Watermark | None
    ) -> ViewRun:
        """Read the window's latest rows, write them batch by batch, then move the watermark."""
        from featurestore.offline.plan import plan_latest

        if view.is_aggregated:
            from featurestore.aggregations.materialize import materialize_tiles

            return materialize_tiles(self, view, claim, window, mark)

        log.info("materializing feature view %s: %s", view.name, window.describe())
        self.progress.view_started(view.name, window)
        began = time.perf_counter()
        join_keys, features = list(view.join_keys), list(view.features)
        rows_read = rows_written = 0
        seen_created: datetime | None = None
        plan = plan_latest(
            view,
            self.state.key_dtypes(view.name),
            repo_path=self.config.repo_path,
            end=window.end,
            start=window.start,
            created_after=window.created_after,
        )
        batches = self.engine.read_latest(plan, batch_rows=self.batch_rows)
        for batch in batches:
            written = self.store.write_rows(claim, batch, join_keys, features)
            rows_read += batch.num_rows
            rows_written += written
            seen_created = _later(seen_created, _max_created(batch))
            self.progress.batch_written(view.name, batch.num_rows, written)
        watermark = next_watermark(mark, window, seen_created)
        self.store.set_watermark(claim, watermark)
        seconds = time.perf_counter() - began
        run = ViewRun(view.name, window, rows_read, rows_written, seconds, watermark)
        log.info(
            "materialized feature view %s: %d entity rows read, %d written (the others were "
            "not newer than what the store holds) in %.2f s; watermark end %s, max created %s",
            view.name,
            rows_read,
            rows_written,
            seconds,
            watermark.end.isoformat(),
            watermark.max_created.isoformat() if watermark.max_created else "none",
        )
        self.progress.view_finished(run)
        return run


def claim_applied(
    store: OnlineStore, identity: ViewIdentity, applied: RegistryState | None, registry: Registry
) -> Claim:
    """Claim ``identity`` (the definition a run or push loaded) in ``store``, inside
    ``registry.settled()`` (``applied``: the state read there).

    Refused with ``RegistryError`` when the applied definition is no longer ``identity``:
    an ``apply`` changed or removed the view after the caller read the registry. Claiming
    the old definition anyway would drop the new definition's online data and write rows
    no reader of the applied definition can see, while the run reported success.
    """
    from featurestore.online.base import ViewIdentity

    record = applied.views.get(identity.view) if applied is not None else None
    if record is None or ViewIdentity.of(record) != identity:
        now = "was removed" if record is None else "changed"
        raise RegistryError(
            f"feature view {identity.view!r} {now} in the registry ({registry.path}) after "
            "this run read it: an apply ran in between; nothing was written. Run it again"
        )
    return store.claim(identity)


def _failed(view: FeatureView, runs: list[ViewRun], exc: FeatureStoreError) -> MaterializationError:
    done = ", ".join(r.view for r in runs) or "none"
    return MaterializationError(
        f"materializing feature view {view.name!r} failed: {exc}. Its watermark did not move "
        f"(views completed in this run: {done}); fix the cause and re-run: re-running is "
        "idempotent"
    )


def _max_created(batch: pa.RecordBatch) -> datetime | None:
    import pyarrow.compute as pc

    value = pc.max(batch.column(CREATED_TS)).as_py()
    return as_utc(value) if value is not None else None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(as_utc(a), b)
