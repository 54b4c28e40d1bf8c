"""Routes `heartbeat` and `typing` (presence subscriptions follow in their own issue)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.typing import relay_typing
from chat_backend.models import HeartbeatFrame, PongFrame, TypingFrame
from chat_backend.observability import logger
from chat_backend.routes import handle_route
from chat_backend.services import services


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event["requestContext"]["routeKey"] == "typing":
        s = services()
        return handle_route(
            event,
            TypingFrame,
            lambda caller, frame: relay_typing(s.store, s.registry, s.queue, caller, frame),
        )
    return handle_route(event, HeartbeatFrame, lambda caller, frame: PongFrame())
