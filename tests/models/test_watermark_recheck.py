"""The served model's watermark re-check on an event loop (``OnlineModel.score_async``),
over a real redis-server of the test's own: a request that finds no row of a view for any
of its entities re-reads the watermarks before scoring, awaited (the loop goes on while
Redis answers) and shared by concurrent requests, yet a drop is still seen at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from model_repo import START, Trained

from featurestore import FeatureStore, models
from featurestore.errors import ModelNotServable
from featurestore.models.online import OnlineModel

UNKNOWN = {"user_id": [10_000_001, 10_000_002]}  # no view has a row for these


def served(trained: Trained, tmp_path: Path, url: str) -> tuple[FeatureStore, OnlineModel]:
    """A copy of the trained repo on Redis at ``url``, materialized, and its model loaded
    as ``featurestore serve`` loads it."""
    copy = trained.copy(tmp_path)
    config = copy.repo / "featurestore.yaml"
    config.write_text(
        config.read_text().replace(
            "online_store: {type: sqlite, path: data/online.db}",
            f"online_store: {{type: redis, url: '{url}'}}",
        )
    )
    store = FeatureStore(copy.repo)
    store.apply()
    store.materialize(START - timedelta(days=5), START + timedelta(days=10))
    return store, OnlineModel(models.load(copy.model), store._online_reader())


def test_concurrent_requests_for_unknown_entities_share_one_watermark_read(
    trained: Trained,
    tmp_path: Path,
    redis_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = redis_factory()
    _, model = served(trained, tmp_path, server.url)
    online_store = model.reader.store
    reads = []  # the real reads, counted on their way to Redis
    read_watermarks = online_store.get_watermarks_async

    async def counted(views: Any) -> Any:
        reads.append(views)
        return await read_watermarks(views)

    monkeypatch.setattr(online_store, "get_watermarks_async", counted)

    async def burst(n: int) -> list[Any]:
        model.require_servable()  # the held watermarks are fresh
        return await asyncio.gather(*(model.score_async(UNKNOWN) for _ in range(n)))

    scored = asyncio.run(burst(40))
    # each request found no row of any view, so each had to re-check; one read served all
    assert len(reads) == 1 and set(reads[0]) == set(model.views)
    assert all(len(s.predictions) == 2 for s in scored)
    assert all(
        set(s.response.statuses[name]) == {"NOT_FOUND"}
        for s in scored
        for name in s.response.statuses
        if name != "user_id"
    )


def test_a_drop_is_seen_by_the_next_request_for_unknown_entities(
    trained: Trained, tmp_path: Path, redis_factory: Callable[..., Any]
) -> None:
    server = redis_factory()
    store, model = served(trained, tmp_path, server.url)

    async def scenario() -> str:
        await model.require_servable_async()  # fresh watermarks held
        await model.score_async(UNKNOWN)  # re-checked: every view still materialized
        store._online_reader().store.drop_view("risk")  # what an apply changing it does
        with pytest.raises(ModelNotServable) as refused:
            await model.score_async(UNKNOWN)  # within refresh_seconds, yet refused
        return str(refused.value)

    assert "'risk'" in asyncio.run(scenario())


def test_the_re_check_does_not_hold_the_event_loop(
    trained: Trained, tmp_path: Path, redis_factory: Callable[..., Any]
) -> None:
    server = redis_factory()
    _, model = served(trained, tmp_path, server.url)
    pid = server.process.pid

    async def scenario() -> tuple[int, float]:
        await model.require_servable_async()  # connections open, watermarks held
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beating = asyncio.get_running_loop().create_task(heartbeat())
        os.kill(pid, signal.SIGSTOP)  # Redis freezes: the re-check waits on it
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, os.kill, pid, signal.SIGCONT)
        started = time.monotonic()
        await model.require_servable_async(started_after=time.monotonic())
        beating.cancel()
        return ticks, time.monotonic() - started

    try:
        ticks, waited = asyncio.run(scenario())
    finally:
        os.kill(pid, signal.SIGCONT)
    assert waited >= 0.4  # the re-check did wait for the frozen server
    assert ticks >= 10  # and the loop ran other work meanwhile (a blocking read: 0)
