"""Route `$default`: any frame whose action no route serves gets BAD_REQUEST."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.observability import logger, metrics, tracer
from chat_backend.routes import unknown_route
from chat_backend.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return unknown_route(event, services().guard)
