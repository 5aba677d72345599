"""A slow Redis never holds the service's event loop: the example repo served by a real
``featurestore serve`` (one worker) on a redis-server of this test's own, frozen with
SIGSTOP while a read is waiting on it; ``/health`` on the same worker still answers at once.

For a read of plain views only (``/get-online-features``: ``OnlineStore.read_async``), for
``/predict`` of the example model, which reads the aggregated view ``user_activity`` beside
plain views (``OnlineStore.read_tiles_async``), and for ``/ready`` (its checks run in a
worker thread).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from service_process import ExampleRepo, ServiceProcess

TIMEOUT = 2.0  # the example's socket_timeout (ExampleRepo.configure)


@pytest.mark.parametrize(
    "path, body",
    [
        ("/get-online-features", {"features": ["user_profile:country"]}),
        ("/predict", {}),
        ("/ready", None),
    ],
    ids=["plain-views", "aggregated-view", "readiness"],
)
def test_a_frozen_redis_does_not_block_the_event_loop(
    example: ExampleRepo,
    tmp_path: Path,
    redis_factory: Callable[..., Any],
    path: str,
    body: dict[str, Any] | None,
) -> None:
    server = redis_factory()
    copy = example.copy(tmp_path, server.url)
    copy.materialize()
    request = None if body is None else {**body, "entities": copy.pairs(5)}
    with ServiceProcess(copy.repo, copy.model) as service:

        def call(timeout: float = 5.0) -> int:
            if request is None:
                return service.client.get(path, timeout=timeout).status_code
            return service.post(path, request, timeout=timeout).status_code

        assert call() == 200  # warm: scripts, connections
        waited: list[tuple[int, float]] = []

        def read() -> None:
            started = time.monotonic()
            status = call(timeout=30)
            waited.append((status, time.monotonic() - started))

        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            reading = threading.Thread(target=read)
            reading.start()
            time.sleep(0.3)  # the read is now waiting on the frozen server
            health = []
            for _ in range(5):
                started = time.monotonic()
                assert service.client.get("/health", timeout=30).status_code == 200
                health.append(time.monotonic() - started)
                time.sleep(0.1)
            reading.join(timeout=30)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        # the read really waited on Redis (one socket timeout, then 503), /health did not
        [(status, seconds)] = waited
        assert status == 503 and seconds >= TIMEOUT * 0.9, (status, seconds)
        assert max(health) < 0.5, health
        assert call() == 200  # the server is used again
