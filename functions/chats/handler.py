"""Route `createChat`."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.chats import create_chat
from chat_backend.models import CreateChatFrame
from chat_backend.observability import logger
from chat_backend.routes import handle_route
from chat_backend.services import services


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_route(
        event, CreateChatFrame, lambda caller, frame: create_chat(services().store, caller, frame)
    )
