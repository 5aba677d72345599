"""FeatureStore: a thin facade that wires config, registry and engines together.

It holds no logic of its own beyond choosing which module does the work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from featurestore.config import RepoConfig, load_config
from featurestore.definitions import Entity, FeatureService, FeatureView
from featurestore.errors import PushError, RetrievalError
from featurestore.registry import Registry
from featurestore.registry_plan import Plan
from featurestore.registry_state import RegistryState
from featurestore.repo import RepoContents, load_repo

if TYPE_CHECKING:
    from datetime import datetime

    from featurestore.compaction import Compaction
    from featurestore.materialize import MaterializationReport, Progress
    from featurestore.offline.engine import OfflineEngine
    from featurestore.on_demand import OnDemandFeatureView
    from featurestore.online.entity_rows import EntityRows
    from featurestore.online.read import OnlineReader, OnlineResponse
    from featurestore.push import PushReport
    from featurestore.push_mode import PushMode
    from featurestore.registry_state import DataSource
    from featurestore.training import RetrievalJob

log = logging.getLogger("featurestore")
_T = TypeVar("_T")


def _one_of(ours: Any, feasts: Any, name: str, optional: bool = False) -> Any:
    """A materialization argument given under our name or Feast's (not both)."""
    from featurestore.errors import MaterializationError

    if ours is not None and feasts is not None:
        raise MaterializationError(f"pass {name} once (ours or Feast's keyword), not both")
    value = ours if ours is not None else feasts
    if value is None and not optional:
        raise MaterializationError(f"materialize: pass {name}")
    return value


def _tagged(objects: list[_T], tags: Mapping[str, str] | None) -> list[_T]:
    """``objects`` holding every key and value of ``tags`` (all of them without tags)."""
    if not tags:
        return objects
    return [o for o in objects if all(getattr(o, "tags", {}).get(k) == v for k, v in tags.items())]


def _write_refusal(state: RegistryState, view_name: str, what: str) -> str:
    """Why ``what`` (Feast's direct write) is refused, and the push that replaces it."""
    from featurestore.definitions import PushSource

    source = state.view(view_name).source
    if isinstance(source, PushSource):
        instead = f"push the rows to its push source: store.push({source.name!r}, df, to=...)"
    else:
        instead = (
            "its source is not a push source: read the view over a PushSource "
            "(batch_source=its source) and push the rows to it"
        )
    return (
        f"{what} is not supported (it writes rows around the sources, so training sets would "
        f"not see what is served); for feature view {view_name!r}, {instead}"
    )


class FeatureStore:
    """A feature repo: ``FeatureStore("feature_repo")``.

    Definitions come from the repo's Python files on ``plan``/``apply``; every read
    (training sets, materialization, online lookups) uses what was *applied*, from the
    registry, so serving never sees an unapplied edit.
    """

    def __init__(
        self,
        repo_path: str | os.PathLike[str] = ".",
        config: RepoConfig | None = None,
        *,
        bigquery_client: Any = None,
    ):
        from featurestore.offline.bigquery.schema import schema_reader

        self.config = config or load_config(repo_path)
        self.repo_path: Path = self.config.repo_path
        # A google.cloud.bigquery.Client for a BigQuery offline store (None: opened on demand).
        self.bigquery_client = bigquery_client
        self._offline: OfflineEngine | None = None
        self._reader: OnlineReader | None = None
        self.registry = Registry(
            self.config.registry_path,
            self.config.project,
            schema_reader(self.config, bigquery_client),
        )

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.repo_path)!r}, project={self.config.project!r})"

    def load_definitions(self) -> RepoContents:
        """Import the repo's Python files and return their (validated) definitions."""
        return load_repo(self.repo_path)

    def plan(self) -> Plan:
        """What ``apply`` would change, without writing anything."""
        return self.registry.plan(self.load_definitions(), self.repo_path)

    @property
    def project(self) -> str:
        """The project's name (``project:`` in featurestore.yaml), as Feast's ``store.project``."""
        return self.config.project

    def refresh_registry(self) -> None:
        """Feast's registry-cache refresh: nothing to do here, every read already reads the
        registry as last applied (re-read when its file changes)."""

    def apply(
        self,
        objects: Any = None,
        objects_to_delete: Any = None,
        partial: bool = True,
    ) -> Plan:
        """Register the repo's definitions; returns what changed.

        The definitions are the repo's Python files, always: Feast's ``apply(objects)``,
        which registers objects built in a notebook, is refused naming what to do instead
        (``objects_to_delete`` and ``partial`` exist only for that refusal).

        Views removed, or whose fingerprint or online row layout (field order, dtypes)
        changed, lose their online data and watermarks first (``Plan.views_to_reset``): they
        must be materialized again. The new registry is serialized and staged before the
        drop, and replaces the old one after it, so a failure leaves the old definitions
        applied and a re-run repeats the (idempotent) drop. A malformed registry is replaced,
        and every applied view is reset (see registry.py).
        """
        if objects is not None or objects_to_delete is not None:
            from featurestore.errors import DefinitionError

            raise DefinitionError(
                "apply(objects) is not supported: featurestore applies the repo's Python "
                "files, so every definition lives in a file the repo keeps; put these "
                f"definitions in a .py file in {str(self.repo_path)!r} and call store.apply() "
                "(or 'featurestore apply'); to remove one, delete it from the files"
            )
        result = self.registry.apply(
            self.load_definitions(), self.repo_path, before_write=self._drop_online_data
        )
        for change in result.changes:
            log.info("%s %s %s", change.action, change.kind, change.name)
        return result

    def _drop_online_data(self, plan: Plan) -> None:
        from featurestore.errors import OnlineStoreError
        from featurestore.online.base import open_online_store

        views = plan.views_to_reset()
        if not views:
            return
        try:
            with open_online_store(self.config) as online:
                for view in views:
                    removed = online.drop_view(view)
                    log.info("dropped %d online rows and the watermark of %s", removed, view)
        except OnlineStoreError as exc:
            raise type(exc)(
                f"apply must first drop the online data of {', '.join(views)} (changed or "
                f"removed), and could not: {exc}"
            ) from exc

    @property
    def state(self) -> RegistryState:
        """The applied definitions (RegistryError if nothing was applied)."""
        return self.registry.require()

    def materialize(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        views: Sequence[str] | None = None,
        *,
        progress: Progress | None = None,
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        feature_views: Sequence[str] | None = None,
    ) -> MaterializationReport:
        """Write online the latest row per entity key with ``start <= event_ts <= end``.

        Both ends inclusive; naive datetimes are UTC. Every online view (or ``views``) in
        turn: its rows are written through the never-regress write, then its watermark moves
        to ``end``. A failure raises ``MaterializationError`` naming the view, with its
        watermark unmoved; re-running is idempotent. See featurestore/materialize.py.
        Feast's keywords ``start_date``, ``end_date`` and ``feature_views`` are accepted.
        """
        from featurestore.materialize import materialize

        start = _one_of(start, start_date, "start")
        end = _one_of(end, end_date, "end")
        views = _one_of(views, feature_views, "views", optional=True)
        from featurestore.online.base import open_online_store

        state = self.state
        with open_online_store(self.config) as online:
            return materialize(
                self.config,
                state,
                online,
                start,
                end,
                views=views,
                progress=progress,
                engine=self.offline_engine(),
            )

    def materialize_incremental(
        self,
        end: datetime | None = None,
        views: Sequence[str] | None = None,
        *,
        progress: Progress | None = None,
        end_date: datetime | None = None,
        feature_views: Sequence[str] | None = None,
    ) -> MaterializationReport:
        """Write what arrived since each view's watermark, up to ``end`` (inclusive).

        Rows with ``event_ts <= end`` that are newer than the last run's end, or created
        after the greatest created time written (late rows, which Feast skips); a view
        without a watermark gets everything up to ``end``. Same guarantees as ``materialize``.
        Feast's keywords ``end_date`` and ``feature_views`` are accepted.
        """
        from featurestore.materialize import materialize_incremental

        end = _one_of(end, end_date, "end")
        views = _one_of(views, feature_views, "views", optional=True)
        from featurestore.online.base import open_online_store

        state = self.state
        with open_online_store(self.config) as online:
            return materialize_incremental(
                self.config,
                state,
                online,
                end,
                views=views,
                progress=progress,
                engine=self.offline_engine(),
            )

    # --- the applied definitions, read as Feast's SDK reads them ---------------------------
    # ``allow_cache``/``allow_registry_cache`` are accepted for Feast's callers: every call
    # reads the registry as last applied. ``tags``: only objects holding all of them.

    def get_feature_service(self, name: str, allow_cache: bool = False) -> FeatureService:
        """The applied feature service ``name`` (as Feast's SDK; pass it as ``features=``)."""
        return self.state.service(name)

    def list_feature_services(self, tags: Mapping[str, str] | None = None) -> list[FeatureService]:
        """The applied feature services, by name."""
        state = self.state
        return _tagged([state.services[n].service for n in sorted(state.services)], tags)

    def get_entity(self, name: str, allow_registry_cache: bool = False) -> Entity:
        """The applied entity ``name``."""
        return self.state.entity(name)

    def list_entities(
        self, allow_cache: bool = False, tags: Mapping[str, str] | None = None
    ) -> list[Entity]:
        """The applied entities, by name."""
        state = self.state
        return _tagged([state.entities[n] for n in sorted(state.entities)], tags)

    def get_feature_view(self, name: str, allow_registry_cache: bool = False) -> FeatureView:
        """The applied feature view ``name`` (not an on-demand one, as in Feast)."""
        return self.state.view(name)

    def list_feature_views(
        self, allow_cache: bool = False, tags: Mapping[str, str] | None = None
    ) -> list[FeatureView]:
        """The applied feature views (on-demand ones are ``list_on_demand_feature_views``),
        by name."""
        state = self.state
        return _tagged([state.views[n].view for n in sorted(state.views)], tags)

    def get_on_demand_feature_view(
        self, name: str, allow_registry_cache: bool = False
    ) -> OnDemandFeatureView:
        """The applied on-demand feature view ``name``."""
        return self.state.on_demand_view(name)

    def list_on_demand_feature_views(
        self, allow_cache: bool = False, tags: Mapping[str, str] | None = None
    ) -> list[OnDemandFeatureView]:
        """The applied on-demand feature views, by name."""
        state = self.state
        return _tagged([state.on_demand[n].view for n in sorted(state.on_demand)], tags)

    def list_all_feature_views(
        self, allow_cache: bool = False, tags: Mapping[str, str] | None = None
    ) -> list[FeatureView | OnDemandFeatureView]:
        """Feature views, then on-demand feature views, each by name."""
        return [*self.list_feature_views(tags=tags), *self.list_on_demand_feature_views(tags=tags)]

    def get_data_source(self, name: str) -> DataSource:
        """The named data source ``name`` that an applied view reads."""
        return self.state.data_source(name)

    def list_data_sources(
        self, allow_cache: bool = False, tags: Mapping[str, str] | None = None
    ) -> list[DataSource]:
        """The data sources applied views read (sources, push sources and their batch
        sources, request sources), each once, by name (unnamed file sources by path)."""
        return _tagged(self.state.data_sources(), tags)

    def write_to_online_store(self, feature_view_name: str, *args: Any, **kwargs: Any) -> None:
        """Feast's write around the sources: refused (``PushError``), naming the view's push
        source when it has one. Rows written online only would be served but never seen by
        a training set: push them (``to="online_and_offline"``) instead."""
        raise PushError(_write_refusal(self.state, feature_view_name, "write_to_online_store"))

    def write_to_offline_store(self, feature_view_name: str, *args: Any, **kwargs: Any) -> None:
        """Feast's offline write: refused (``PushError``) as ``write_to_online_store``; a
        push with ``to="offline"`` appends to a push source's batch source."""
        raise PushError(_write_refusal(self.state, feature_view_name, "write_to_offline_store"))

    def push(
        self,
        push_source_name: str,
        df: Any,
        to: PushMode | str = "online",
        *,
        now: datetime | None = None,
        allow_registry_cache: bool = True,
        transform_on_write: bool = True,
    ) -> PushReport:
        """Push rows into the views of a push source (featurestore/push.py).

        ``df``: a pandas DataFrame, a pyarrow Table or a mapping of columns, holding the
        views' join keys, the batch source's event time and the views' features (the created
        time is optional: the push time by default). ``to``: ``"online"`` (Feast's default),
        ``"offline"`` (a new Parquet file that training sets read) or ``"online_and_offline"``
        (Feast's ``PushMode`` values too). Checked before anything is written: a refused
        push (``PushError``) writes nothing. Online pushes use the store connection
        ``get_online_features`` opened (see ``close``). Feast's ``allow_registry_cache`` and
        ``transform_on_write`` are accepted and change nothing (the registry is re-read when
        its file changes; no transformation runs on write here).
        """
        from featurestore.push import push
        from featurestore.push_mode import PushMode, push_mode

        mode = push_mode(to)
        if mode is PushMode.OFFLINE:
            return push(self.state, self.repo_path, push_source_name, df, mode, None, now=now)
        # The online reader's store and registry (re-read when its file changes): one
        # connection for a stream of pushes, not one per push.
        reader = self._online_reader()
        reader.store.ping()  # unreachable: refused before anything is written
        return push(
            reader.state(),
            self.repo_path,
            push_source_name,
            df,
            mode,
            reader.store,
            registry=self.registry,
            now=now,
        )

    def compact_pushes(
        self, sources: Sequence[str] | None = None, target_bytes: int | None = None
    ) -> list[Compaction]:
        """Merge the many small files offline pushes wrote into few (featurestore/
        compaction.py): every answer stays the same, pushes wait while a run of files is
        merged. ``sources``: push source names (default: every applied one); ``target_bytes``:
        the size merged files aim at (default 128 MiB). One report per push folder."""
        from featurestore.compaction import TARGET_BYTES, compact_pushes

        return compact_pushes(self.state, self.repo_path, sources, target_bytes or TARGET_BYTES)

    def offline_engine(self) -> OfflineEngine:
        """The configured offline engine (``offline/engine.py``: ``open_offline_engine``),
        with this store's BigQuery client if one was given; opened once and kept."""
        if self._offline is None:
            from featurestore.offline.engine import open_offline_engine

            self._offline = open_offline_engine(self.config, bigquery_client=self.bigquery_client)
        return self._offline

    def get_historical_features(
        self,
        entity_df: Any = None,
        features: Sequence[str] | FeatureService | None = None,
        *,
        feature_service: str | FeatureService | None = None,
        full_feature_names: bool = False,
        as_of: Literal["event", "created"] = "event",
        with_timestamps: bool = False,
    ) -> RetrievalJob:
        """A point-in-time-correct training set for ``entity_df`` (see DESIGN.md "Semantics").

        ``entity_df`` holds the join keys and ``event_timestamp`` (other columns pass
        through): a pandas DataFrame, a pyarrow Table, a Parquet file or folder, a CSV file,
        or a SQL query run by the offline engine with its full access (on DuckDB, every file
        the process can read: never build one from untrusted input); see
        offline/entities.py. Per row and view, the latest source row with
        ``t - ttl <= event_ts <= t`` wins (ties: greater created time, then later file and
        row), and no such row gives nulls. ``as_of="created"`` also requires
        ``created_ts <= t``. Pass ``features`` (``"view:feature"`` refs or a FeatureService)
        or ``feature_service`` (a name or object).

        ``with_timestamps=True`` adds, per view, the winning row's event and created times
        as ``<view>__event_ts`` and ``<view>__created_ts`` (timestamp[us, UTC]; null without
        a winner, created also null when the source has no created column): what replaying
        served requests needs to tell a stale online value from a late correction.

        The entity rows are read and the join planned now (errors are raised here); the
        join runs on the configured engine when the job's result is first asked for.
        """
        from featurestore.training import historical_job

        if (features is None) == (feature_service is None):
            raise RetrievalError("pass exactly one of features= or feature_service=")
        state = self.state
        projections, service = state.resolve(
            feature_service if feature_service is not None else features  # type: ignore[arg-type]  # exactly one is None, checked above
        )
        return historical_job(
            self.offline_engine(),
            state,
            entity_df,
            projections,
            service,
            full_feature_names=full_feature_names,
            as_of=as_of,
            with_timestamps=with_timestamps,
            repo_path=self.repo_path,
        )

    def get_online_features(
        self,
        features: Sequence[str] | FeatureService | None = None,
        entity_rows: EntityRows | None = None,
        *,
        feature_service: str | FeatureService | None = None,
        full_feature_names: bool = False,
        now: datetime | None = None,
    ) -> OnlineResponse:
        """The latest materialized values for ``entity_rows``, with per-feature statuses.

        ``entity_rows``: ``[{"user_id": 1}, ...]`` or ``{"user_id": [1, ...]}``, keys typed
        as declared (``"1"`` is not an Int64 key). Pass ``features`` (``"view:feature"`` refs
        or a FeatureService) or ``feature_service`` (a name or object). A value is PRESENT
        when ``now - ttl <= event_ts`` (NULL_VALUE if the stored value is null), else null
        with OUTSIDE_MAX_AGE; NOT_FOUND when nothing was materialized for the key. ``now``
        (default: the current time) only moves that ttl check. One store round trip per
        call; the store is opened on first use and kept (see ``close``).
        """
        return self._online_reader().get_online_features(
            features,
            entity_rows,
            feature_service=feature_service,
            full_feature_names=full_feature_names,
            now=now,
        )

    def _online_reader(self) -> OnlineReader:
        reader = self._reader
        if reader is None:
            from featurestore.online.base import open_online_store
            from featurestore.online.read import OnlineReader

            store = open_online_store(self.config)
            reader = self._reader = OnlineReader(
                store, self.config.registry_path, self.registry.require, self.repo_path
            )
        return reader

    def close(self) -> None:
        """Close the online store connection that ``get_online_features`` opened, if any."""
        reader = self._reader
        if reader is not None:
            reader.store.close()
            self._reader = None
