"""``featurestore serve``: uvicorn running the app in one process, or in N worker processes.

Workers are uvicorn's (spawned interpreters sharing one listening socket, restarted when
they die); they build the app from the environment (``serving.settings``). Signals:

- SIGTERM / SIGINT: uvicorn's graceful shutdown (each worker finishes its requests in flight,
  then writes its feature log's queue out), then the process exits.
- SIGHUP: the app's own handler reloads the model and registry in every worker, keeping the
  old model where the new one is refused. With one worker the app receives the signal
  itself; with several, the supervisor forwards it to each worker instead of uvicorn's
  default (restarting them).

Metrics: ``PROMETHEUS_MULTIPROC_DIR`` is pointed at a fresh temporary folder (removed at
exit) unless already set, so that ``/metrics`` aggregates every worker.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

# nothing here imports prometheus_client: it must first see PROMETHEUS_MULTIPROC_DIR
from serving.settings import MODEL_ENV, MULTIPROC_ENV, REPO_ENV

APP = "serving.app:create_app_from_environment"
log = logging.getLogger("featurestore.serving")


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup, plus our logger (start-up line, reloads, dropped log rows)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["featurestore"] = {"handlers": ["default"], "level": level.upper()}
    return config


def run(
    repo: Path,
    model: Path,
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT (module docstring)."""
    import uvicorn
    from uvicorn.supervisors.multiprocess import Multiprocess

    class Supervisor(Multiprocess):
        """uvicorn's worker supervisor, forwarding SIGHUP to the workers' own handlers."""

        def handle_hup(self) -> None:
            log.info("SIGHUP: asking %d workers to reload the model", len(self.processes))
            for process in self.processes:
                if process.pid is not None:
                    os.kill(process.pid, signal.SIGHUP)

    os.environ[REPO_ENV] = str(repo.resolve())
    os.environ[MODEL_ENV] = str(model.resolve())
    own_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        own_dir = tempfile.mkdtemp(prefix="featurestore-metrics-")
        os.environ[MULTIPROC_ENV] = own_dir
    config = uvicorn.Config(
        APP,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config(log_level),
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    try:
        if workers == 1:
            uvicorn.Server(config).run()
        else:
            socket = config.bind_socket()
            Supervisor(config, sockets=[socket]).run()
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
