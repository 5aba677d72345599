"""The practical limit on this machine: FastAPI + redis.asyncio, one pipelined HMGET per
request, no decoding, no checks. Run by bench_serving.py under uvicorn (its own workers).

    BARE_REDIS_URL=redis://127.0.0.1:PORT/0 BARE_PREFIX='bench|driver_id=i' BARE_FIELDS=1,2 \
        uvicorn bare_endpoint:app --app-dir benchmarks --port 7000
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from fastapi import FastAPI, Request, Response

PREFIX = os.environ.get("BARE_PREFIX", "bench|driver_id=i")
FIELDS = os.environ.get("BARE_FIELDS", "1,2").split(",")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.redis = redis.Redis.from_url(os.environ["BARE_REDIS_URL"])
    yield
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/get-online-features")
async def features(request: Request) -> Response:
    body = await request.json()
    ids = body["entities"]["driver_id"]
    pipe = request.app.state.redis.pipeline(transaction=False)
    for i in ids:
        pipe.hmget(f"{PREFIX}{i}", FIELDS)
    rows = await pipe.execute()
    found = sum(1 for row in rows for v in row if v is not None)
    return Response(f'{{"found":{found}}}', media_type="application/json")
