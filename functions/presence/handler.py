"""Route `heartbeat` (presence and typing follow in their own issue)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from chat_backend.models import HeartbeatFrame, PongFrame
from chat_backend.observability import logger
from chat_backend.routes import handle_route


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_route(event, HeartbeatFrame, lambda caller, frame: PongFrame())
