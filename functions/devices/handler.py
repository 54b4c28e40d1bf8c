"""Routes `sendToDevice`, `ackToDevice`: the per-device channel for end-to-end key material;
`registerPush`, `unregisterPush`: the device's mobile push token."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import route_handler
from chat_backend.logic.notifications import register_push, unregister_push
from chat_backend.logic.to_device import ack_to_device, send_to_device
from chat_backend.models.client_frames import (
    AckToDeviceFrame,
    RegisterPushFrame,
    SendToDeviceFrame,
    UnregisterPushFrame,
)
from chat_backend.routes import RouteTable
from chat_backend.services import Services


def device_routes(s: Services, context: LambdaContext) -> RouteTable:
    return {
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
    }


handler = route_handler("devices", device_routes)
