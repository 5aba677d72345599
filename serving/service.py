"""What the routes call: the served model, the online reader, the feature log and metrics.

One ``Service`` per worker process, built by the app's lifespan. The model and the reader it
reads through are swapped together, as one attribute, by ``reload`` (SIGHUP), so a request
in flight finishes with the model it started with.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from featurestore.errors import FeatureStoreError, RetrievalError, TooManyEntitiesError
from featurestore.feature_log import (
    ONLINE_FEATURES,
    PREDICT,
    FeatureLogWriter,
    ServedRequest,
    log_columns,
    read_definitions,
)
from featurestore.models.online import OnlineModel, ServingStatus, load_online_model
from featurestore.online.base import OnlineStore, open_online_store
from featurestore.online.codec import from_us
from featurestore.online.read import ReadPlan, read_online_async
from featurestore.online.response import NOT_FOUND, OUTSIDE_MAX_AGE, OnlineResponse
from featurestore.push import PushReport, push
from featurestore.push_mode import push_mode
from featurestore.registry import Registry
from featurestore.registry_state import RegistryState
from serving import encoding
from serving.materialization import Materializer
from serving.metrics import LogMetrics, Metrics
from serving.settings import ServingSettings

log = logging.getLogger("featurestore.serving")


class Service:
    """The service's state in one worker (module docstring)."""

    def __init__(self, settings: ServingSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        config = settings.config
        self.registry = Registry(config.registry_path, config.project)
        self.store: OnlineStore = open_online_store(config, check=False)
        try:
            self.model = self._load()
        except BaseException:
            self.store.close()
            raise
        log = settings.feature_log
        self.log = FeatureLogWriter(log.path, queue_size=log.queue_size, hooks=LogMetrics(metrics))
        self.materializer = Materializer(
            config, self.store, self._state, metrics, lambda: self.model.watermarks_changed()
        )
        self._columns: dict[int, tuple[ReadPlan, dict[str, str], str]] = {}
        self._publish_model(None)

    def _load(self) -> OnlineModel:
        """Load the model and a fresh view of the registry; ModelError unless they match."""
        return load_online_model(
            self.settings.model, self.settings.config, self.store, self.registry
        )

    def reload(self) -> bool:
        """SIGHUP: load the model and registry again; keep the old model if the new one is
        unreadable, tampered with or does not match the registry."""
        old = self.model
        try:
            new = self._load()
        except FeatureStoreError as exc:
            self.metrics.reloads.labels("refused").inc()
            log.warning(
                "SIGHUP: still serving %s (sha256 %s): the model at %s was refused: %s",
                old.name,
                old.sha256[:12],
                self.settings.model,
                exc,
            )
            return False
        self.model = new
        self._publish_model(old)
        self.metrics.reloads.labels("loaded").inc()
        log.warning(
            "SIGHUP: now serving %s (fingerprint %s, sha256 %s; was sha256 %s)",
            new.name,
            new.fingerprint[:12],
            new.sha256[:12],
            old.sha256[:12],
        )
        return True

    def _publish_model(self, old: OnlineModel | None) -> None:
        if old is not None:
            self.metrics.model_info.labels(old.name, old.fingerprint, old.sha256).set(0)
        m = self.model
        self.metrics.model_info.labels(m.name, m.fingerprint, m.sha256).set(1)
        self.metrics.binding.set(1)

    def _state(self) -> RegistryState:
        """The registry as the served model's reader last loaded it."""
        return self.model.reader.state()

    async def close(self) -> None:
        """Write the feature log's queue out, then close the store (clean shutdown)."""
        interrupted = self.materializer.running()
        if interrupted:
            log.warning(
                "shutting down while materializing feature views %s (started with ?async=true): "
                "the views it had not finished keep their watermarks; run it again",
                ", ".join(interrupted),
            )
        await asyncio.to_thread(self.log.close)
        await self.store.close_async()

    # --- the endpoints' work -----------------------------------------------------------

    def check_size(self, entities: Mapping[str, Sequence[Any]]) -> None:
        n = max((len(v) for v in entities.values()), default=0)
        if n > self.settings.serving.max_entities:
            raise TooManyEntitiesError(
                f"{n} entity rows in one request; the limit is {self.settings.serving.max_entities} "
                "(serving.max_entities in featurestore.yaml): split the request"
            )

    async def online_features(
        self,
        entities: Mapping[str, Sequence[Any]],
        features: Sequence[str],
        feature_service: str | None,
        full_feature_names: bool,
        request_id: str,
    ) -> str:
        """``/get-online-features``: the SDK's read, in Feast's JSON shape."""
        self.check_size(entities)
        if feature_service and features:
            raise RetrievalError("pass either 'features' or 'feature_service', not both")
        if not feature_service and not features:
            raise RetrievalError("pass 'features' (['view:feature', ...]) or 'feature_service'")
        reader = self.model.reader
        plan, _ = reader.plan(feature_service or list(features), full_feature_names)
        now_us = time.time_ns() // 1000
        started = time.perf_counter()
        response = await read_online_async(reader.store, plan, entities, from_us(now_us))
        self.metrics.read_seconds.labels(ONLINE_FEATURES).observe(time.perf_counter() - started)
        self._count_statuses(plan, response)
        if self.settings.feature_log.include_online_features:
            columns, definitions = self._logged(plan)
            self.log.submit(
                ServedRequest(
                    request_id,
                    now_us,
                    ONLINE_FEATURES,
                    response,
                    columns,
                    service=feature_service,
                    definitions=definitions,
                )
            )
        return encoding.online_features(response)

    async def predict(
        self, entities: Mapping[str, Sequence[Any]], include_features: bool, request_id: str
    ) -> str:
        """``/predict``: 503 unless the model is servable, then read, score, log."""
        self.check_size(entities)
        model = self.model
        try:
            await model.require_servable_async()
        except FeatureStoreError:
            self.metrics.binding.set(1 if model.binding().matches else 0)
            raise
        self.metrics.binding.set(1)
        started = time.perf_counter()
        scored = await model.score_async(entities)
        self.metrics.read_seconds.labels(PREDICT).observe(time.perf_counter() - started)
        self._count_statuses(scored.plan, scored.response)
        predictions = scored.predictions.tolist()
        self.metrics.predictions.inc(len(predictions))
        columns, definitions = self._logged(scored.plan)
        self.log.submit(
            ServedRequest(
                request_id,
                scored.now_us,
                PREDICT,
                scored.response,
                columns,
                definitions=definitions,
                service=model.service,
                model=model.name,
                model_fingerprint=model.fingerprint,
                model_sha256=model.sha256,
                predictions=tuple(predictions),
            )
        )
        return encoding.prediction(
            request_id,
            model.name,
            model.fingerprint,
            model.sha256,
            predictions,
            scored.response if include_features else None,
        )

    def push(self, source: str, df: Mapping[str, Sequence[Any]], to: str) -> PushReport:
        """``/push``: the SDK's push (featurestore/push.py) into this service's store, with
        the registry as the service's reader last loaded it."""
        reader = self.model.reader
        repo = self.settings.config.repo_path
        report = push(reader.state(), repo, source, df, to, self.store, registry=self.registry)
        self.metrics.pushed_rows.labels(source, push_mode(to).name.lower()).inc(report.rows)
        return report

    def status(self) -> ServingStatus:
        model = self.model
        status = model.status(self.settings.serving.max_lag)
        self.metrics.binding.set(1 if status.binding is None or status.binding.matches else 0)
        return status

    def _logged(self, plan: ReadPlan) -> tuple[dict[str, str], str]:
        """The plan's log column names and its definitions (computed once per plan)."""
        found = self._columns.get(id(plan))
        if found is None or found[0] is not plan:
            if len(self._columns) > 1_000:
                self._columns = {}
            found = self._columns[id(plan)] = (plan, log_columns(plan), read_definitions(plan))
        return found[1], found[2]

    def _count_statuses(self, plan: ReadPlan, response: OnlineResponse) -> None:
        """Per view, the entity rows read NOT_FOUND / OUTSIDE_MAX_AGE (one feature tells)."""
        for view, names, _ in plan.views_read:
            statuses = response.statuses[names[0]]
            for status in (NOT_FOUND, OUTSIDE_MAX_AGE):
                count = statuses.count(status)
                if count:
                    self.metrics.feature_status.labels(view, status).inc(count)
