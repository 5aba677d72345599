"""Prometheus metrics of the service (prometheus-client), aggregated over worker processes.

``featurestore serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before any
worker starts (or keeps the one the environment names), so every worker writes its samples
there and ``GET /metrics`` on any worker answers for all of them (prometheus-client's
multiprocess mode: counters and histograms are summed; gauges as noted below). Without that
variable (an app built in-process), the metrics are this process's own.

===================================================  =========  ==================================
name                                                 type       labels / meaning
===================================================  =========  ==================================
``featurestore_http_request_duration_seconds``       histogram  ``endpoint``: time in the app
``featurestore_http_requests_total``                 counter    ``endpoint``, ``status`` (HTTP code)
``featurestore_online_read_duration_seconds``        histogram  ``endpoint``: the online store read
``featurestore_feature_status_total``                counter    ``view``, ``status``: entity rows
                                                                read NOT_FOUND or OUTSIDE_MAX_AGE
``featurestore_predictions_total``                   counter    entity rows scored
``featurestore_feature_log_queue_rows``              gauge      rows waiting to be written (sum of
                                                                live workers)
``featurestore_feature_log_written_rows_total``      counter    rows written to Parquet
``featurestore_feature_log_dropped_rows_total``      counter    rows dropped: the queue was full
``featurestore_feature_log_failed_rows_total``       counter    rows lost to a write error
``featurestore_model_binding_matches``               gauge      1 when the registry matches the
                                                                model's binding (minimum over workers)
``featurestore_model_info``                          gauge      ``model``, ``fingerprint``,
                                                                ``sha256``, ``pid``: 1 for the model
                                                                each worker serves
``featurestore_model_reloads_total``                 counter    ``outcome``: loaded / refused (SIGHUP)
``featurestore_unhandled_errors_total``              counter    ``endpoint``: errors answered with 500
``featurestore_transformation_errors_total``         counter    ``view``: on-demand views whose
                                                                function failed (answered with 500)
``featurestore_pushed_rows_total``                   counter    ``source``, ``to``: rows pushed
===================================================  =========  ==================================
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from featurestore.feature_log import LogHooks
from serving.settings import MULTIPROC_ENV

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The service's metrics, registered in their own registry (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_seconds = Histogram(
            "featurestore_http_request_duration_seconds",
            "Time to answer a request, per endpoint.",
            ["endpoint"],
            buckets=BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "featurestore_http_requests",
            "Requests answered, per endpoint and status code.",
            ["endpoint", "status"],
            registry=r,
        )
        self.read_seconds = Histogram(
            "featurestore_online_read_duration_seconds",
            "Time of the online store read (one round trip), per endpoint.",
            ["endpoint"],
            buckets=BUCKETS,
            registry=r,
        )
        self.feature_status = Counter(
            "featurestore_feature_status",
            "Entity rows whose view was read NOT_FOUND or OUTSIDE_MAX_AGE, per view.",
            ["view", "status"],
            registry=r,
        )
        self.predictions = Counter("featurestore_predictions", "Entity rows scored.", registry=r)
        self.log_queue = Gauge(
            "featurestore_feature_log_queue_rows",
            "Feature log rows waiting to be written.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.log_written = Counter(
            "featurestore_feature_log_written_rows", "Feature log rows written.", registry=r
        )
        self.log_dropped = Counter(
            "featurestore_feature_log_dropped_rows",
            "Feature log rows dropped because the queue was full.",
            registry=r,
        )
        self.log_failed = Counter(
            "featurestore_feature_log_failed_rows",
            "Feature log rows lost to a write error.",
            registry=r,
        )
        self.binding = Gauge(
            "featurestore_model_binding_matches",
            "1 when the registry still matches the served model's binding, else 0.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.model_info = Gauge(
            "featurestore_model_info",
            "1 for the model a worker serves.",
            ["model", "fingerprint", "sha256"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.reloads = Counter(
            "featurestore_model_reloads",
            "Model reloads on SIGHUP, by outcome (loaded or refused).",
            ["outcome"],
            registry=r,
        )
        self.unhandled = Counter(
            "featurestore_unhandled_errors",
            "Unexpected errors answered with status 500, per endpoint.",
            ["endpoint"],
            registry=r,
        )

        self.transformation_errors = Counter(
            "featurestore_transformation_errors",
            "Requests whose on-demand view's function failed (answered with 500), per view.",
            ["view"],
            registry=r,
        )
        self.materializations = Counter(
            "featurestore_materializations",
            "Runs of /materialize and /materialize-incremental, by endpoint and outcome "
            "(succeeded, failed).",
            ["kind", "outcome"],
            registry=r,
        )
        self.pushed_rows = Counter(
            "featurestore_pushed_rows",
            "Rows pushed through /push, per push source and destination.",
            ["source", "to"],
            registry=r,
        )

    def exposition(self) -> bytes:
        """The text format of every worker's metrics (or this process's alone)."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class LogMetrics(LogHooks):
    """The feature log writer's reports, counted in ``Metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def queued(self, rows: int) -> None:
        self.metrics.log_queue.set(rows)

    def dropped(self, rows: int) -> None:
        self.metrics.log_dropped.inc(rows)

    def written(self, rows: int, path: Path) -> None:
        self.metrics.log_written.inc(rows)

    def failed(self, rows: int, error: BaseException) -> None:
        self.metrics.log_failed.inc(rows)
