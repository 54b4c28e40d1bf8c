"""Route `sync`: MESSAGE (and VOID) frames pushed to the caller, then SYNC_DONE as the route's answer
(over the HTTP fallback, all of them in the answer's `frames`)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import lambda_handler
from chat_backend.logic.sync import sync
from chat_backend.models.client_frames import SyncFrame
from chat_backend.routes import handle_pushing_route
from chat_backend.services import services


@lambda_handler("sync")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = services()
    return handle_pushing_route(
        event,
        SyncFrame,
        lambda caller, frame, sink: sync(
            s.ledger, sink, caller, frame, s.settings.hole_grace_s, inbox=s.inbox
        ),
        s.guard,
        s.poster,
    )
