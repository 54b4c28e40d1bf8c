"""Routes `heartbeat`, `typing` and `presence`."""

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.connections import beat
from chat_backend.logic.presence import subscribe
from chat_backend.logic.typing import relay_typing
from chat_backend.models.client_frames import HeartbeatFrame, PresenceFrame, TypingFrame
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import PongFrame
from chat_backend.observability import count, logger, metrics, tracer
from chat_backend.routes import handle_routes
from chat_backend.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = services()
    now = time.time()

    def heartbeat(caller: Caller, frame: HeartbeatFrame) -> PongFrame:
        pong = beat(s.store, s.presence, s.pusher, caller, now)
        count("Heartbeats")
        return pong

    def typing(caller: Caller, frame: TypingFrame) -> None:
        max_direct = s.settings.direct_push_max_members
        relay_typing(s.store, s.consent, s.member_lists, s.limiter, s.pusher, caller, frame, max_direct)

    return handle_routes(
        event,
        {
            "heartbeat": (HeartbeatFrame, heartbeat),
            "typing": (TypingFrame, typing),
            "presence": (
                PresenceFrame,
                lambda caller, frame: subscribe(s.store, s.presence, s.poster, s.io_pool, caller, frame, now),
            ),
        },
        s.guard,
    )
