"""Routes `block`, `unblock` and `setPrivacy`."""

import time

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import route_handler
from chat_backend.logic.consent import block, set_privacy
from chat_backend.models.client_frames import BlockFrame, SetPrivacyFrame
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import OkFrame
from chat_backend.routes import RouteTable
from chat_backend.services import Services


def consent_routes(s: Services, context: LambdaContext) -> RouteTable:
    def blocking(caller: Caller, frame: BlockFrame) -> OkFrame:
        return block(s.consent, s.store, s.presence, caller, frame, int(time.time() * 1000))

    return {
        "block": (BlockFrame, blocking),
        "unblock": (BlockFrame, blocking),
        "setPrivacy": (SetPrivacyFrame, lambda caller, frame: set_privacy(s.consent, caller, frame)),
    }


handler = route_handler("consent", consent_routes)
