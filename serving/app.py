"""The prediction service: ``create_app(settings)`` builds the FastAPI app.

Its lifespan loads the model and refuses to start when the registry no longer matches the
model's binding (naming the views that changed), opens the online store without requiring it
to answer (with Redis down the app starts, ``/ready`` says so, requests get 503 until it
answers), starts the feature log's writer, and installs the SIGHUP handler (reload the model
and registry; keep the old model if the new one is refused). On shutdown (SIGTERM) uvicorn
finishes the requests in flight, then the lifespan writes the feature log's queue out.

Errors: one handler maps the library's errors (featurestore/errors.py) to status codes and a
JSON body ``{"detail": "<one line>", "error": "<class>"}``:

=========================  ======  =====================================================
error                      status  when
=========================  ======  =====================================================
request validation         422     malformed JSON (also not UTF-8, or nested too deep for the
                                   parser), a field of the wrong type (named)
no such path or method     404/405 (``"error"``: ``NotFound``, ``MethodNotAllowed``)
TooManyEntitiesError       413     more entity rows than ``serving.max_entities``
BodyTooLarge               413     a body larger than ``serving.max_body_mb`` (refused from its
                                   Content-Length, or as soon as more was read)
UnknownFeatureError        404     an unknown feature, view or service (with close names)
UnknownPushSourceError     404     ``/push`` to a push source no applied view reads
RetrievalError             400     a missing join key or request field, columns of different
                                   lengths, a key or request field of the wrong type (named)
PushError                  400     ``/push`` rows refused (named column or row): nothing written
MaterializationInProgress  409     ``/materialize?async=true`` of a view this worker is
                                   materializing already (``?force=true`` starts another)
MaterializationError       500     a ``/materialize`` run failed (named; no watermark moved)
TransformationError        500     an on-demand view's function raised or returned what its
                                   schema refuses: ``"view"`` names it, logged with its
                                   traceback and counted per view
ModelNotServable           503     the registry no longer matches the model, or a view it
                                   reads has no materialized data or is an aggregated one
                                   materialized past now (named)
MaterializedAheadError     503     ``/get-online-features``: the same aggregated view
OnlineStoreError           503     the online store does not answer (within its timeout)
RegistryError              503     the registry is missing or unreadable
anything else              500     logged with its traceback and counted; answered by the
                                   middleware, so the keep-alive connection stays open
=========================  ======  =====================================================

With ``FEATURESTORE_API_TOKEN`` set, every endpoint but ``/health`` answers 401 unless the
request carries ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import math
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager, suppress
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from featurestore.errors import (
    FeatureStoreError,
    MaterializationError,
    MaterializedAheadError,
    ModelNotServable,
    OnlineStoreError,
    PushError,
    RegistryError,
    RetrievalError,
    TooManyEntitiesError,
    TransformationError,
    UnknownFeatureError,
    UnknownPushSourceError,
)
from serving import encoding, fastpath
from serving.materialization import MaterializationInProgress
from serving.metrics import Metrics
from serving.routes import ENDPOINTS, JSON, router
from serving.service import Service
from serving.settings import ServingSettings, from_environment

log = logging.getLogger("featurestore.serving")


class BodyTooLarge(FeatureStoreError):
    """A request body larger than ``serving.max_body_mb`` (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the request body is larger than {limit // 2**20} MiB (serving.max_body_mb in "
            "featurestore.yaml): split the request"
        )


STATUS_CODES: tuple[tuple[type[FeatureStoreError], int], ...] = (
    (TooManyEntitiesError, 413),
    (BodyTooLarge, 413),
    (MaterializationInProgress, 409),
    (MaterializationError, 500),
    (MaterializedAheadError, 503),  # read at the current time: a state, not the request
    (UnknownFeatureError, 404),
    (UnknownPushSourceError, 404),
    (RetrievalError, 400),
    (PushError, 400),
    (ModelNotServable, 503),
    (OnlineStoreError, 503),
    (RegistryError, 503),
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


def create_app(settings: ServingSettings) -> FastAPI:
    """The prediction service for ``settings`` (module docstring)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await asyncio.to_thread(Service, settings, metrics)
        app.state.service = service
        # Everything loaded so far (libraries, the model, the registry) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks it (it
        # paused /predict for ~80-120 ms a few times a minute under load).
        gc.collect()
        gc.freeze()
        loop = asyncio.get_running_loop()
        reloading: set[asyncio.Task[bool]] = set()

        def on_sighup() -> None:
            task = loop.create_task(asyncio.to_thread(service.reload))
            reloading.add(task)
            task.add_done_callback(reloading.discard)

        hooked = False
        with suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
            hooked = True
        try:
            yield
        finally:
            if hooked:
                loop.remove_signal_handler(signal.SIGHUP)
            await service.close()

    app = FastAPI(
        title="featurestore prediction service",
        description="Online features (Feast's API) and predictions of a model bound to them.",
        version="1",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.include_router(router)
    # Starlette types a handler as taking any Exception; these take the class they handle
    app.add_exception_handler(FeatureStoreError, _library_error)  # type: ignore[arg-type]  # see above
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]  # see above
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]  # see above
    app.add_middleware(
        Instrumented,
        metrics=metrics,
        token=settings.api_token,
        max_body=settings.serving.max_body_mb * 2**20,
    )
    return app


def create_app_from_environment() -> FastAPI:
    """The app for uvicorn's worker processes (``featurestore serve`` sets the environment)."""
    return create_app(from_environment())


def error_body(status: int, detail: str, error: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "error": error}, status_code=status, headers=headers)


async def _library_error(request: Request, exc: FeatureStoreError) -> JSONResponse:
    if isinstance(exc, TransformationError):
        return _transformation_error(request, exc)
    status = next((code for kind, code in STATUS_CODES if isinstance(exc, kind)), None)
    if status is None:
        status = 500
        _count_unexpected(request, exc)
    elif status == 500:  # expected, and named in its message: one line, no traceback
        log.error("%s: %s", request.url.path, exc)
    headers = {"Retry-After": "1"} if status == 503 else {}
    return error_body(status, str(exc), type(exc).__name__, **headers)


def _transformation_error(request: Request, exc: TransformationError) -> JSONResponse:
    """The user's function failed: 500 naming the view, its traceback logged, counted."""
    log.error("on-demand feature view %s failed on %s", exc.view, request.url.path, exc_info=exc)
    metrics: Metrics = request.app.state.metrics
    metrics.transformation_errors.labels(exc.view or "unknown").inc()
    body = {"detail": str(exc), "error": type(exc).__name__, "view": exc.view}
    return JSONResponse(body, status_code=500)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first.get("loc", ()))
    detail = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    context = first.get("ctx")
    if first.get("type") == "json_invalid" and isinstance(context, dict):
        detail += f": {context.get('error')}"  # the parser's own words say what is wrong
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    body = {
        "detail": detail + more,
        "error": "RequestValidationError",
        "errors": jsonable_encoder(
            errors,
            custom_encoder={bytes: lambda b: b.decode(errors="replace"), float: _json_float},
        ),
    }
    # ASCII JSON: the input quoted may hold a lone surrogate (JSON's "\ud800"), which
    # JSONResponse's UTF-8 cannot encode; escaped, it is sent back as it came
    return Response(json.dumps(body, allow_nan=False), status_code=422, media_type=JSON)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """The framework's own errors in the service's shape: no such path (404) or method (405),
    and a body its JSON parser refused (FastAPI raises a 400 from the parser's error: not
    UTF-8, nested too deep), which is malformed JSON like any other: 422."""
    if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI re-raises a read's error as a 400
        return error_body(413, str(exc.__cause__), "BodyTooLarge")
    if exc.status_code == 400 and exc.__cause__ is not None:
        detail = f"the body is not readable JSON ({type(exc.__cause__).__name__}): send UTF-8 JSON"
        return error_body(422, detail, "RequestValidationError")
    error = HTTPStatus(exc.status_code).phrase.replace(" ", "")
    return error_body(exc.status_code, str(exc.detail), error, **(exc.headers or {}))


def _json_float(v: float) -> float | str:
    """A float quoted in an error, by the service's JSON rule: NaN and infinities as the
    strings "NaN", "Infinity", "-Infinity" (JSON has no literal for them)."""
    return v if math.isfinite(v) else json.loads(encoding.float64(v))


def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything else (``Instrumented`` answers it): 500, logged with its traceback, counted."""
    _count_unexpected(request, exc)
    return error_body(500, f"internal error ({type(exc).__name__}); it was logged", "InternalError")


def _count_unexpected(request: Request, exc: BaseException) -> None:
    log.error("unexpected error on %s", request.url.path, exc_info=exc)
    metrics: Metrics = request.app.state.metrics
    metrics.unhandled.labels(_endpoint(request.url.path)).inc()


def _endpoint(path: str) -> str:
    return path if path in ENDPOINTS else "other"


class Instrumented:
    """Pure ASGI middleware: the bearer token check, the body size limit, per-endpoint
    latency and counts, and the 500 of an unexpected error (the keep-alive connection
    stays open)."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, token: str | None, max_body: int = 64 * 2**20
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.token = f"Bearer {token}".encode() if token else None
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = _endpoint(scope["path"])
        started = time.perf_counter()
        status = 500
        answered = False  # the response has started: nothing else can be sent

        async def sending(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
            await send(message)

        try:
            if self.token is not None and endpoint != "/health" and not self._authorized(scope):
                response = error_body(
                    401,
                    "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                    "(FEATURESTORE_API_TOKEN)",
                    "Unauthorized",
                    **{"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, sending)
                return
            if self._declared_length(scope) > self.max_body:
                await error_body(413, str(BodyTooLarge(self.max_body)), "BodyTooLarge")(
                    scope, receive, sending
                )
                return
            receive = self._limited(receive)
            try:
                if fastpath.takes(scope):
                    await fastpath.serve(scope, receive, sending, self.app, _library_error)
                else:
                    await self.app(scope, receive, sending)
            except BodyTooLarge as exc:  # the fast path reads the body before any answer
                if answered:
                    raise
                await error_body(413, str(exc), "BodyTooLarge")(scope, receive, sending)
            except Exception as exc:
                # Answered here rather than by Starlette's outermost middleware, which
                # re-raises after answering: uvicorn then closes the connection, and a
                # client's next request on it fails. A response already started is broken:
                # re-raised, the connection closes.
                if answered:
                    raise
                await _unexpected_error(Request(scope), exc)(scope, receive, sending)
        finally:
            self.metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, str(status)).inc()

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return int(value) if value.isdigit() else 0
        return 0

    def _limited(self, receive: Any) -> Any:
        """``receive`` that raises ``BodyTooLarge`` once the body read passes the limit (a
        body sent without Content-Length, or longer than it said)."""
        read = 0

        async def limited() -> Message:
            nonlocal read
            message: Message = await receive()
            read += len(message.get("body", b""))
            if read > self.max_body:
                raise BodyTooLarge(self.max_body)
            return message

        return limited

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return hmac.compare_digest(value, self.token or b"")
        return False
