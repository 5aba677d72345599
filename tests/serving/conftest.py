"""Fixtures: the example repo served by a real ``featurestore serve`` over real HTTP.

``example`` (session): the example repo, applied, a tiny model, materialized into its own
throwaway Redis (built once per test process). ``service`` (session): one server on it,
shared by the tests that only read. Tests that change anything copy the repo
(``ExampleRepo.copy``), usually onto their own Redis, and start their own server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from service_process import ExampleRepo, ServiceProcess, build_example


@pytest.fixture(scope="session")
def example(
    tmp_path_factory: pytest.TempPathFactory, redis_session_factory: Callable[..., object]
) -> ExampleRepo:
    server = redis_session_factory()
    return build_example(tmp_path_factory.mktemp("example"), server.url)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def service(example: ExampleRepo) -> Iterator[ServiceProcess]:
    server = ServiceProcess(example.repo, example.model)
    yield server
    server.stop()


@pytest.fixture
def own_example(
    example: ExampleRepo, tmp_path: Path, redis_factory: Callable[..., object]
) -> ExampleRepo:
    """A copy of the example on its own Redis, materialized: a test may change anything."""
    server = redis_factory()
    copy = example.copy(tmp_path, server.url)  # type: ignore[attr-defined]
    copy.materialize()
    return copy
