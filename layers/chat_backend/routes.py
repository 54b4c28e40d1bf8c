"""The one place where a WebSocket route invocation becomes a use-case call and errors become
ERROR frames. Every route handler is `handle_route(event, FrameModel, use_case)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.parser import parse

from chat_backend.errors import BadRequest, ChatError, RateLimited
from chat_backend.logic.rate_limits import RouteGuard
from chat_backend.models.client_frames import ClientFrame, decode_body, echo_ids, parse_frame
from chat_backend.models.events import Caller, RouteEvent
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
    data: dict[str, Any] | None = None
    route_key = str(event.get("requestContext", {}).get("routeKey"))
    try:
        caller = caller_of(event)
        data = decode_body(event.get("body"))
        frame = parse_frame(frame_model, data)
        guard.admit(route_key, caller.user_id, caller.connection_id, getattr(frame, "chat_id", None))
        answer = use_case(caller, frame)
        return route_response(answer) if answer is not None else {"statusCode": 200}
    except RateLimited as exc:
        return _rate_limited(exc, route_key, guard, data)
    except ChatError as exc:
        return _refused(exc, data)
    except Exception:
        logger.exception("route failed")
        count("RouteFailures")
        return route_response(ErrorFrame(code="INTERNAL", message="internal error", **echo_ids(data)))


def _refused(
    exc: ChatError, data: dict[str, Any] | None, retry_after_ms: int | None = None
) -> dict[str, Any]:
    logger.info("frame refused", extra={"code": exc.code, "reason": exc.message})
    count("FramesRefused")
    return route_response(
        ErrorFrame(code=exc.code, message=exc.message, retry_after_ms=retry_after_ms, **echo_ids(data))
    )


def _rate_limited(
    exc: RateLimited, route_key: str, guard: RouteGuard, data: dict[str, Any] | None
) -> dict[str, Any]:
    if guard.is_silent(route_key):  # fire-and-forget frames over their limit: dropped, no answer
        count("FramesDropped")
        return {"statusCode": 200}
    return _refused(exc, data, exc.retry_after_ms)


Route = tuple[type[Any], Callable[[Caller, Any], ServerFrame | None]]


def handle_routes(event: dict[str, Any], table: dict[str, Route], guard: RouteGuard) -> dict[str, Any]:
    """A function serving several routes: its table maps each route key to (frame model, use case)."""
    frame_model, use_case = table[event["requestContext"]["routeKey"]]
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
        return _rate_limited(exc, "$default", guard, data)
    except ChatError as exc:
        return _refused(exc, data)
