"""Routes `publishKeys`, `fetchKeys`, `queryDevices`, `claimKeys`, `getChatDevices`: end-to-end
encryption public keys and device lists (a publish that changes a user's devices is announced)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import route_handler
from chat_backend.logic.device_lists import DeviceNews, get_chat_devices
from chat_backend.logic.keys import claim_keys, fetch_keys, publish_keys, query_devices
from chat_backend.models.client_frames import (
    ClaimKeysFrame,
    FetchKeysFrame,
    GetChatDevicesFrame,
    PublishKeysFrame,
    QueryDevicesFrame,
)
from chat_backend.routes import RouteTable
from chat_backend.services import Services


def key_routes(svc: Services, context: LambdaContext) -> RouteTable:
    news = DeviceNews(
        svc.listing, svc.store, svc.consent, svc.limiter, svc.pusher, svc.settings.direct_push_max_members
    )
    return {
        "publishKeys": (PublishKeysFrame, lambda caller, frame: publish_keys(svc.keys, caller, frame, news)),
        "fetchKeys": (
            FetchKeysFrame,
            lambda caller, frame: fetch_keys(svc.consent, svc.keys, svc.limiter, svc.io_pool, caller, frame),
        ),
        "queryDevices": (
            QueryDevicesFrame,
            lambda caller, frame: query_devices(svc.keys, svc.io_pool, frame),
        ),
        "claimKeys": (
            ClaimKeysFrame,
            lambda caller, frame: claim_keys(svc.consent, svc.keys, svc.limiter, svc.io_pool, caller, frame),
        ),
        "getChatDevices": (
            GetChatDevicesFrame,
            lambda caller, frame: get_chat_devices(svc.store, svc.keys, svc.io_pool, caller, frame),
        ),
    }


handler = route_handler("keys", key_routes)
