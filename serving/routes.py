"""The endpoints: thin handlers over ``serving.service.Service``.

Handlers are ``async``: the service's work (key checks, decoding, the matrix, LightGBM on
one thread, JSON) runs on the event loop, and only the store's round trip is awaited
(``OnlineStore.read_async``: redis.asyncio on the same read script), so a slow or hung Redis
holds its own requests, never the loop. Measured (README, "Serving"): ``def`` handlers in
FastAPI's threadpool gave about 30% fewer requests per second than calling the store inline,
and awaiting the read gave more than either under concurrent load.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.routing import APIRoute

from featurestore.errors import RetrievalError
from serving import encoding
from serving.materialization import EPOCH, INCREMENTAL, MATERIALIZE, MaterializeRun
from serving.schemas import (
    ErrorResponse,
    MaterializeAccepted,
    MaterializedView,
    MaterializeIncrementalRequest,
    MaterializeRequest,
    MaterializeResponse,
    OnlineFeaturesResponse,
    PredictRequest,
    PredictResponse,
    Problem,
    PushRequest,
    PushResponse,
    ReadyResponse,
)
from serving.schemas import OnlineFeaturesRequest as FeaturesBody
from serving.service import Service

ENDPOINTS = frozenset(
    {
        "/get-online-features",
        "/predict",
        "/push",
        "/materialize",
        "/materialize-incremental",
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
    }
)
REQUEST_ID = "X-Request-ID"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,200}$")
JSON = "application/json"


class _Request(Request):
    """A request whose JSON body is read by the service's one reader (``encoding.loads``)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = encoding.loads(await self.body())
        return self._json


class _Route(APIRoute):
    """FastAPI's route, handing the handler a ``_Request`` (FastAPI's documented way to
    change how a body is read)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(_Request(request.scope, request.receive))

        return handle


router = APIRouter(route_class=_Route)
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "A missing join key, columns of different lengths, a key of the wrong type."),
        (401, "FEATURESTORE_API_TOKEN is set and the bearer token is missing or wrong."),
        (404, "An unknown feature, view or feature service."),
        (413, "More entity rows than serving.max_entities."),
        (500, "An on-demand view's function failed ('view' names it)."),
        (503, "The online store does not answer, or the model cannot be served now."),
    )
}


def _service(request: Request) -> Service:
    return request.app.state.service


def request_id(given: str | None) -> str:
    if given is None:
        return uuid.uuid4().hex
    if not _VALID_ID.match(given):
        raise RetrievalError(
            f"header {REQUEST_ID} {given[:60]!r} must be 1 to 200 letters, digits or ._:/+=@-"
        )
    return given


@router.post(
    "/get-online-features",
    response_model=OnlineFeaturesResponse,
    responses=ERRORS,
    summary="Online features, in Feast's request and response shape",
)
async def get_online_features(request: Request, body: FeaturesBody) -> Response:
    service = _service(request)
    text = await service.online_features(
        body.entities,
        body.features,
        body.feature_service,
        body.full_feature_names,
        uuid.uuid4().hex,
    )
    return Response(text, media_type=JSON)


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    summary="Score entity rows with the served model",
)
async def predict(
    request: Request,
    body: PredictRequest,
    x_request_id: Annotated[str | None, Header(alias=REQUEST_ID)] = None,
) -> Response:
    rid = request_id(x_request_id)
    text = await _service(request).predict(body.entities, body.include_features, rid)
    return Response(text, media_type=JSON, headers={REQUEST_ID: rid})


@router.post(
    "/push",
    response_model=PushResponse,
    responses=ERRORS,
    summary="Push rows into a push source's views (Feast's body): online, offline or both",
)
async def push(request: Request, body: PushRequest) -> Response:
    # The file write and the store's writes block: off the event loop.
    report = await asyncio.to_thread(
        _service(request).push, body.push_source_name, body.df, body.to
    )
    answer = PushResponse(
        push_source_name=report.source,
        to=body.to,
        rows=report.rows,
        views=list(report.views),
        online_written=report.online_written,
    )
    return Response(answer.model_dump_json(), media_type=JSON)


MATERIALIZE_ANSWERS: dict[int | str, dict[str, object]] = {
    **ERRORS,
    202: {"model": MaterializeAccepted, "description": "?async=true: the run started."},
    409: {
        "model": ErrorResponse,
        "description": "?async=true and this worker is materializing one of the views already "
        "(?force=true starts another).",
    },
    422: {"description": "A malformed body: a time that does not parse, end before start."},
    500: {"model": ErrorResponse, "description": "The run failed (named): no watermark moved."},
}
Async = Annotated[
    bool, Query(alias="async", description="Start the run in the background: 202 at once.")
]
Force = Annotated[
    bool, Query(description="With async: start even if this worker is materializing a view.")
]


@router.post(
    "/materialize",
    response_model=MaterializeResponse,
    responses=MATERIALIZE_ANSWERS,
    summary="Write online the latest rows with event times in [start_ts, end_ts] (Feast's body)",
)
async def materialize(
    request: Request, body: MaterializeRequest, run_async: Async = False, force: Force = False
) -> Response:
    if body.disable_event_timestamp:
        start, end = EPOCH, datetime.now(UTC)
    else:
        assert body.start_ts is not None and body.end_ts is not None  # the body's validator
        start, end = body.start_ts, body.end_ts
    run = MaterializeRun(MATERIALIZE, end, body.feature_views, start)
    return await _materialize(request, run, run_async, force)


@router.post(
    "/materialize-incremental",
    response_model=MaterializeResponse,
    responses=MATERIALIZE_ANSWERS,
    summary="Write what arrived since each view's last run, up to end_ts (Feast's body)",
)
async def materialize_incremental(
    request: Request,
    body: MaterializeIncrementalRequest,
    run_async: Async = False,
    force: Force = False,
) -> Response:
    run = MaterializeRun(INCREMENTAL, body.end_ts, body.feature_views)
    return await _materialize(request, run, run_async, force)


async def _materialize(
    request: Request, run: MaterializeRun, run_async: bool, force: bool
) -> Response:
    materializer = _service(request).materializer
    if run_async:
        views = materializer.start(run, force)
        accepted = MaterializeAccepted(feature_views=views)
        return Response(accepted.model_dump_json(), status_code=202, media_type=JSON)
    report = await asyncio.to_thread(materializer.run, run)
    answer = MaterializeResponse(
        feature_views=[
            MaterializedView(
                view=r.view,
                start=None if r.window.start is None else r.window.start.isoformat(),
                end=r.window.end.isoformat(),
                watermark_end=r.watermark.end.isoformat(),
                rows_read=r.rows_read,
                rows_written=r.rows_written,
                seconds=round(r.seconds, 3),
            )
            for r in report.runs
        ],
        skipped=report.skipped,
    )
    return Response(answer.model_dump_json(), media_type=JSON)


@router.get("/health", summary="Alive (no check of anything else)")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "Not ready: problems named."}},
    summary="Model loaded, store answering, binding matching, views materialized and fresh",
)
async def ready(request: Request) -> Response:
    service = _service(request)
    # blocking checks (PING, watermarks; a slow store holds them up to its socket timeout):
    # in a worker thread, so the loop serves other requests meanwhile
    status = await asyncio.to_thread(service.status)
    model = service.model
    body = ReadyResponse(
        ready=status.ok,
        model=model.name,
        model_fingerprint=model.fingerprint,
        problems=[Problem(check=c, detail=d) for c, d in status.problems],
        views={v: None if m is None else m.end.isoformat() for v, m in status.watermarks.items()},
    )
    return Response(body.model_dump_json(), status_code=200 if status.ok else 503, media_type=JSON)


@router.get("/metrics", summary="Prometheus metrics of every worker")
async def metrics(request: Request) -> Response:
    exposition = request.app.state.metrics.exposition()
    return Response(exposition, media_type="text/plain; version=0.0.4; charset=utf-8")
