"""The one place where a route invocation becomes a use-case call and errors become ERROR frames.
Every route handler is `handle_route(event, FrameModel, use_case)` (a function serving several
routes: `handle_routes` with its route table, which handler_kit.route_handler builds a handler from).

Two kinds of event reach the same handlers: WebSocket route events (the caller from the $connect
authorizer's context; the answer is sent back on the connection) and API Gateway HTTP API events,
payload format 2.0, of the HTTP fallback (PROTOCOL.md v1.1 "HTTP fallback"): `POST /v1/<action>`,
the caller from the JWT authorizer's claims (`sub`; the device from the `device` claim, else the
X-Chat-Device header, else "default"), the answer `{"frames": [...]}`."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.parser import parse

from chat_backend.errors import BadRequest, ChatError, RateLimited, Unauthorized
from chat_backend.logic.auth import identity_of
from chat_backend.logic.frame_sink import FrameCollector, FrameSink
from chat_backend.logic.rate_limits import RouteGuard
from chat_backend.models.client_frames import ClientFrame
from chat_backend.models.events import Caller, RouteEvent
from chat_backend.models.frame_parsing import decode_body, echo_ids, parse_frame
from chat_backend.models.server_frames import ErrorFrame, ServerFrame
from chat_backend.observability import count, logger

F = TypeVar("F", bound=ClientFrame)


def route_response(frame: ServerFrame) -> dict[str, Any]:
    """A two-way route's answer: API Gateway sends `body` back on the caller's connection."""
    return {"statusCode": 200, "body": frame.to_json()}


def caller_of(event: dict[str, Any]) -> Caller:
    ctx = parse(event=event, model=RouteEvent).request_context
    return Caller(
        user_id=ctx.authorizer.user_id, device_id=ctx.authorizer.device_id, connection_id=ctx.connection_id
    )


def handle_route(
    event: dict[str, Any],
    frame_model: type[F],
    use_case: Callable[[Caller, F], ServerFrame | None],
    guard: RouteGuard,
) -> dict[str, Any]:
    """Parse, apply the route's rate limits, run the use case. A use case returning None answers
    nothing (the frame needs no reply unless it fails)."""
    if is_http(event):
        return _http_route(event, frame_model, use_case, guard, FrameCollector())
    route_key = str(event.get("requestContext", {}).get("routeKey"))
    answer = _answer(event, route_key, lambda: caller_of(event), frame_model, use_case, guard)
    return route_response(answer) if answer is not None else {"statusCode": 200}


def handle_pushing_route(
    event: dict[str, Any],
    frame_model: type[F],
    use_case: Callable[[Caller, F, FrameSink], ServerFrame | None],
    guard: RouteGuard,
    poster: FrameSink,
) -> dict[str, Any]:
    """A route whose use case also hands frames to the caller besides its answer (sync's replay):
    on a WebSocket they are posted to the connection; over HTTP they are collected and answered,
    in order, before the use case's answer."""
    if is_http(event):
        collector = FrameCollector()
        return _http_route(event, frame_model, lambda c, f: use_case(c, f, collector), guard, collector)
    return handle_route(event, frame_model, lambda c, f: use_case(c, f, poster), guard)


def _answer(
    event: dict[str, Any],
    route_key: str,
    caller: Callable[[], Caller],
    frame_model: type[F],
    use_case: Callable[[Caller, F], ServerFrame | None],
    guard: RouteGuard,
    action: str | None = None,
) -> ServerFrame | None:
    """The use case's answer, or the ERROR frame for what went wrong, or None (no answer).
    `action`: the action the frame must have (over HTTP, the path's)."""
    data: dict[str, Any] | None = None
    try:
        who = caller()
        data = decode_body(_body(event))
        if action is not None and data.get("action") != action:
            raise BadRequest(f"the frame's action is not {action!r}, the path's")
        frame = parse_frame(frame_model, data)
        guard.admit(route_key, who.user_id, who.connection_id, getattr(frame, "chat_id", None))
        return use_case(who, frame)
    except RateLimited as exc:
        return _rate_limited(exc, route_key, guard, data)
    except ChatError as exc:
        return _refused(exc, data)
    except Exception:
        logger.exception("route failed")
        count("RouteFailures")
        return ErrorFrame(code="INTERNAL", message="internal error", **echo_ids(data))


# --- the HTTP fallback -------------------------------------------------------------------------------

HTTP_PATH_PREFIX = "/v1/"


def is_http(event: dict[str, Any]) -> bool:
    """An API Gateway HTTP API event (payload format 2.0), not a WebSocket route event."""
    return event.get("version") == "2.0" and "http" in (event.get("requestContext") or {})


def http_action(event: dict[str, Any]) -> str:
    """The action a `POST /v1/<action>` route serves (its route key, else the request's path)."""
    ctx = event.get("requestContext") or {}
    route = str(ctx.get("routeKey") or "")
    path = route.partition(" ")[2] if " " in route else str(event.get("rawPath") or "")
    return path.removeprefix(HTTP_PATH_PREFIX)


def http_caller(event: dict[str, Any]) -> Caller:
    """The caller of an HTTP API request, from the JWT authorizer's verified claims. Its pseudo
    connection id `http:<user>:<device>` is what the per-connection rate limits count (no
    connection exists: nothing is ever posted to it)."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims")
    if not isinstance(claims, dict):
        raise Unauthorized("no JWT authorizer claims")
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    identity = identity_of(claims, headers.get("x-chat-device"))
    return Caller(
        user_id=identity.user_id,
        device_id=identity.device_id,
        connection_id=f"http:{identity.user_id}:{identity.device_id}",
    )


def http_response(status: int, frames: list[str] | None = None, message: str | None = None) -> dict[str, Any]:
    """`{"frames": [...]}` (each frame's JSON text as it would have gone on the WebSocket), or
    `{"message": ...}` for a status other than 200."""
    body = '{"frames":[' + ",".join(frames or []) + "]}" if frames is not None else None
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": body if body is not None else json.dumps({"message": message or ""}),
    }


def _http_route(
    event: dict[str, Any],
    frame_model: type[F],
    use_case: Callable[[Caller, F], ServerFrame | None],
    guard: RouteGuard,
    collector: FrameCollector,
) -> dict[str, Any]:
    try:
        caller = http_caller(event)
    except Unauthorized as exc:
        logger.info("http request refused", extra={"reason": exc.message})
        count("HttpRequestsRefused")
        return http_response(401, message="Unauthorized")
    action = http_action(event)
    answer = _answer(event, action, lambda: caller, frame_model, use_case, guard, action)
    return http_response(200, [*collector.frames, *([answer.to_json()] if answer is not None else [])])


def _body(event: dict[str, Any]) -> str | None:
    body = event.get("body")
    if body is None or not event.get("isBase64Encoded"):
        return body
    try:
        return base64.b64decode(body).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest("frame is not valid UTF-8 text") from exc


def _refused(exc: ChatError, data: dict[str, Any] | None, retry_after_ms: int | None = None) -> ErrorFrame:
    logger.info("frame refused", extra={"code": exc.code, "reason": exc.message})
    count("FramesRefused")
    return ErrorFrame(code=exc.code, message=exc.message, retry_after_ms=retry_after_ms, **echo_ids(data))


def _rate_limited(
    exc: RateLimited, route_key: str, guard: RouteGuard, data: dict[str, Any] | None
) -> ErrorFrame | None:
    if guard.is_silent(route_key):  # fire-and-forget frames over their limit: dropped, no answer
        count("FramesDropped")
        return None
    return _refused(exc, data, exc.retry_after_ms)


Route = tuple[type[Any], Callable[[Caller, Any], ServerFrame | None]]
RouteTable = dict[str, Route]  # route key -> (frame model, use case)


def handle_routes(event: dict[str, Any], table: RouteTable, guard: RouteGuard) -> dict[str, Any]:
    """A function serving several routes: its table maps each route key to (frame model, use case)."""
    key = http_action(event) if is_http(event) else event["requestContext"]["routeKey"]
    frame_model, use_case = table[key]
    return handle_route(event, frame_model, use_case, guard)


def unknown_route(event: dict[str, Any], guard: RouteGuard) -> dict[str, Any]:
    """$default: the frame had no known action (or was not JSON at all)."""
    data: dict[str, Any] | None = None
    try:
        caller = caller_of(event)
        guard.admit("$default", caller.user_id, caller.connection_id)
        data = decode_body(event.get("body"))
        action = data.get("action")
        if action is None:
            raise BadRequest("frame has no action")
        raise BadRequest(f"unknown action {action!r}"[:200])
    except RateLimited as exc:
        answer = _rate_limited(exc, "$default", guard, data)
    except ChatError as exc:
        answer = _refused(exc, data)
    return route_response(answer) if answer is not None else {"statusCode": 200}
