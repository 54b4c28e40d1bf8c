"""The one place where a WebSocket route invocation becomes a use-case call and errors become
ERROR frames. Every route handler is `handle_route(event, FrameModel, use_case)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.parser import parse

from chat_backend.errors import BadRequest, ChatError, RateLimited
from chat_backend.models import (
    Caller,
    ClientFrame,
    ErrorFrame,
    RouteEvent,
    ServerFrame,
    decode_body,
    echo_ids,
    parse_frame,
)
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
    event: dict[str, Any], frame_model: type[F], use_case: Callable[[Caller, F], ServerFrame | None]
) -> dict[str, Any]:
    """A use case returning None answers nothing (the frame needs no reply unless it fails)."""
    data: dict[str, Any] | None = None
    try:
        caller = caller_of(event)
        data = decode_body(event.get("body"))
        frame = parse_frame(frame_model, data)
        answer = use_case(caller, frame)
        return route_response(answer) if answer is not None else {"statusCode": 200}
    except ChatError as exc:
        logger.info("frame refused", extra={"code": exc.code, "reason": exc.message})
        count("FramesRefused")
        retry_after = exc.retry_after_ms if isinstance(exc, RateLimited) else None
        return route_response(
            ErrorFrame(code=exc.code, message=exc.message, retry_after_ms=retry_after, **echo_ids(data))
        )
    except Exception:
        logger.exception("route failed")
        count("RouteFailures")
        return route_response(ErrorFrame(code="INTERNAL", message="internal error", **echo_ids(data)))


Route = tuple[type[Any], Callable[[Caller, Any], ServerFrame | None]]


def handle_routes(event: dict[str, Any], table: dict[str, Route]) -> dict[str, Any]:
    """A function serving several routes: its table maps each route key to (frame model, use case)."""
    frame_model, use_case = table[event["requestContext"]["routeKey"]]
    return handle_route(event, frame_model, use_case)


def unknown_route(event: dict[str, Any]) -> dict[str, Any]:
    """$default: the frame had no known action (or was not JSON at all)."""
    data: dict[str, Any] | None = None
    try:
        data = decode_body(event.get("body"))
        action = data.get("action")
        if action is None:
            raise BadRequest("frame has no action")
        raise BadRequest(f"unknown action {action!r}"[:200])
    except ChatError as exc:
        return route_response(ErrorFrame(code=exc.code, message=exc.message, **echo_ids(data)))
