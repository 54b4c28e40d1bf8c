"""Route `$default`: any frame whose action no route serves gets BAD_REQUEST."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import lambda_handler
from chat_backend.routes import unknown_route
from chat_backend.services import services


@lambda_handler("default")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return unknown_route(event, services().guard)
