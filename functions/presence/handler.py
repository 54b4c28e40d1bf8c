"""Routes `heartbeat`, `typing` and `presence`."""

import time

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import route_handler
from chat_backend.logic.connections import beat
from chat_backend.logic.presence import subscribe
from chat_backend.logic.typing import relay_typing
from chat_backend.models.client_frames import HeartbeatFrame, PresenceFrame, TypingFrame
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import PongFrame
from chat_backend.observability import count
from chat_backend.routes import RouteTable
from chat_backend.services import Services


def presence_routes(s: Services, context: LambdaContext) -> RouteTable:
    now = time.time()

    def heartbeat(caller: Caller, frame: HeartbeatFrame) -> PongFrame:
        pong = beat(s.store, s.presence, s.pusher, caller, now)
        count("Heartbeats")
        return pong

    def typing(caller: Caller, frame: TypingFrame) -> None:
        max_direct = s.settings.direct_push_max_members
        relay_typing(s.store, s.consent, s.member_lists, s.limiter, s.pusher, caller, frame, max_direct)

    return {
        "heartbeat": (HeartbeatFrame, heartbeat),
        "typing": (TypingFrame, typing),
        "presence": (
            PresenceFrame,
            lambda caller, frame: subscribe(s.store, s.presence, s.poster, s.io_pool, caller, frame, now),
        ),
    }


handler = route_handler("presence", presence_routes)
