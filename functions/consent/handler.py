"""Routes `block`, `unblock` and `setPrivacy`."""

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.consent import block, set_privacy
from chat_backend.models.client_frames import BlockFrame, SetPrivacyFrame
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import OkFrame
from chat_backend.observability import logger, metrics, tracer
from chat_backend.routes import handle_routes
from chat_backend.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = services()

    def blocking(caller: Caller, frame: BlockFrame) -> OkFrame:
        return block(s.consent, s.store, s.presence, caller, frame, int(time.time() * 1000))

    return handle_routes(
        event,
        {
            "block": (BlockFrame, blocking),
            "unblock": (BlockFrame, blocking),
            "setPrivacy": (SetPrivacyFrame, lambda caller, frame: set_privacy(s.consent, caller, frame)),
        },
        s.guard,
    )
