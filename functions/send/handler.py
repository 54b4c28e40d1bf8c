"""Route `send`: store the message under the next seq of its chat, answer ACK."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.send import send_message
from chat_backend.models import SendFrame
from chat_backend.observability import logger
from chat_backend.routes import handle_route
from chat_backend.services import services


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = services()
    return handle_route(
        event, SendFrame, lambda caller, frame: send_message(s.store, caller, frame, s.settings.dedup_ttl_s)
    )
