"""The fast path of the two hot endpoints, ``POST /get-online-features`` and ``POST /predict``:
plain ASGI in place of FastAPI's request handling (routing through two routers, dependency
resolution, pydantic validation of the body, a Response object), which cost more CPU per
request than the store read and the decoding together (README, "Serving over HTTP").

A request is answered here only when its body is plainly valid: ``Content-Type:
application/json``, and JSON whose fields have exactly the types the request schema declares
(serving/schemas.py), so pydantic would accept it unchanged. Anything else (malformed JSON, a
wrong or unknown field, a value pydantic would coerce such as ``"true"`` for a bool, another
content type, a repeated ``X-Request-ID``) goes to the FastAPI route with the body replayed,
so its answer (a 422 naming the field, or the same success) and ``/openapi.json`` are the
framework's. The work is the routes' own: the same ``Service`` calls with the same arguments,
the library's errors mapped by the app's one handler, anything unexpected raised to the
middleware's 500; the middleware around it (bearer token, metrics) is the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from featurestore.errors import FeatureStoreError
from serving import encoding
from serving.routes import REQUEST_ID, request_id
from serving.service import Service

Check = Callable[[Any], bool]
Answer = tuple[str, list[tuple[bytes, bytes]]]  # body text, extra headers
ErrorHandler = Callable[[Request, Any], Awaitable[Response]]


def _text(v: Any) -> bool:
    """A str pydantic takes as is (UTF-8 encodable: not a lone surrogate)."""
    if type(v) is not str:
        return False
    if v.isascii():
        return True
    try:
        v.encode()
    except UnicodeEncodeError:
        return False
    return True


def _flag(v: Any) -> bool:
    return type(v) is bool


def _entities(v: Any) -> bool:
    """``dict[str, list[Any]]``."""
    return type(v) is dict and all(_text(k) and type(c) is list for k, c in v.items())


def _features(v: Any) -> bool:
    """``list[str]``."""
    return type(v) is list and all(_text(f) for f in v)


def _optional_text(v: Any) -> bool:
    return v is None or _text(v)


# Per endpoint, its body's fields (as in serving/schemas.py) and a check of each value.
FEATURES_FIELDS: dict[str, Check] = {
    "features": _features,
    "feature_service": _optional_text,
    "entities": _entities,
    "full_feature_names": _flag,
    "include_feature_view_version_metadata": _flag,
}
PREDICT_FIELDS: dict[str, Check] = {"entities": _entities, "include_features": _flag}


def plain_body(body: bytes, fields: Mapping[str, Check]) -> dict[str, Any] | None:
    """The JSON body when pydantic would take it unchanged (``entities`` given, no other
    field than ``fields``, each of its exact type), else None."""
    try:
        parsed = encoding.loads(body)
    except Exception:  # JSON errors, but also RecursionError: the route's answer, not ours
        return None
    if type(parsed) is not dict or "entities" not in parsed:
        return None
    for name, value in parsed.items():
        check = fields.get(name)
        if check is None or not check(value):
            return None
    return parsed


async def _online_features(service: Service, body: dict[str, Any], scope: Scope) -> Answer:
    text = await service.online_features(
        body["entities"],
        body.get("features", []),
        body.get("feature_service"),
        body.get("full_feature_names", False),
        uuid.uuid4().hex,
    )
    return text, []


async def _predict(service: Service, body: dict[str, Any], scope: Scope) -> Answer:
    given = _header(scope, b"x-request-id")
    rid = request_id(given)
    text = await service.predict(body["entities"], body.get("include_features", False), rid)
    return text, [(REQUEST_ID.lower().encode(), rid.encode("latin-1"))]


ROUTES: dict[str, tuple[Mapping[str, Check], Callable[..., Awaitable[Answer]]]] = {
    "/get-online-features": (FEATURES_FIELDS, _online_features),
    "/predict": (PREDICT_FIELDS, _predict),
}


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), as Starlette reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def takes(scope: Scope) -> bool:
    """Whether the fast path may answer this request (a POST to one of its paths, JSON,
    one X-Request-ID at most); the body is checked later."""
    if scope["method"] != "POST" or scope["path"] not in ROUTES or scope.get("root_path"):
        return False
    content_type = ids = 0
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type += 1 if value.lower() == b"application/json" else 2
        elif key == b"x-request-id":
            ids += 1
    return content_type == 1 and ids <= 1


async def serve(
    scope: Scope, receive: Receive, send: Send, app: ASGIApp, on_error: ErrorHandler
) -> None:
    """Answer a request ``takes`` accepted, or hand it to ``app`` (the FastAPI route) with
    its body replayed when the body is not plainly valid (or the client left while sending it)."""
    messages = await _read_body(receive)
    body = b"".join(m.get("body", b"") for m in messages)
    fields, call = ROUTES[scope["path"]]
    parsed = plain_body(body, fields) if messages[-1]["type"] == "http.request" else None
    if parsed is None:
        await app(scope, _replay(messages, receive), send)
        return
    service: Service = scope["app"].state.service
    try:
        text, headers = await call(service, parsed, scope)
    except FeatureStoreError as exc:
        response = await on_error(Request(scope, receive), exc)
        await response(scope, receive, send)
        return
    content = text.encode()
    headers += [
        (b"content-length", str(len(content)).encode()),
        (b"content-type", b"application/json"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def _read_body(receive: Receive) -> list[Message]:
    """The request's messages up to the end of its body, or up to a disconnect."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that gives ``messages`` first, then what the server sends next."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
