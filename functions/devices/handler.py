"""Routes `sendToDevice`, `ackToDevice`: the per-device channel for end-to-end key material;
`registerPush`, `unregisterPush`: the device's mobile push token."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.notifications import register_push, unregister_push
from chat_backend.logic.to_device import ack_to_device, send_to_device
from chat_backend.models.client_frames import (
    AckToDeviceFrame,
    RegisterPushFrame,
    SendToDeviceFrame,
    UnregisterPushFrame,
)
from chat_backend.observability import logger, metrics, tracer
from chat_backend.routes import handle_routes
from chat_backend.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = services()
    return handle_routes(
        event,
        {
            "sendToDevice": (
                SendToDeviceFrame,
                lambda caller, frame: send_to_device(
                    s.inbox, s.store, s.consent, s.limiter, s.pusher, caller, frame
                ),
            ),
            "ackToDevice": (AckToDeviceFrame, lambda caller, frame: ack_to_device(s.inbox, caller, frame)),
            "registerPush": (
                RegisterPushFrame,
                lambda caller, frame: register_push(s.push_registry, s.push_sender, caller, frame),
            ),
            "unregisterPush": (
                UnregisterPushFrame,
                lambda caller, frame: unregister_push(s.push_registry, s.push_sender, caller, frame),
            ),
        },
        s.guard,
    )
