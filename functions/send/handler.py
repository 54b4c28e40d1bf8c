"""Route `send`: store the message under the next seq of its chat, push it to the online members
of a small chat, answer ACK."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import lambda_handler
from chat_backend.logic.direct import send_and_push
from chat_backend.models.client_frames import SendFrame
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import AckFrame
from chat_backend.observability import count
from chat_backend.routes import handle_route
from chat_backend.services import services


@lambda_handler("send")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = services()

    def send(caller: Caller, frame: SendFrame) -> AckFrame:
        ack = send_and_push(s.ledger, s.pusher, s.notify_queue, caller, frame, s.send_policy)
        count("SendsAcked")  # retried sends included: each got its (same) ACK
        return ack

    return handle_route(event, SendFrame, send, s.guard)
