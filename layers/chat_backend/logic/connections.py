"""$connect / $disconnect: the registry of which device is reachable on which connection."""

from __future__ import annotations

import time

from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.models import Caller, now_iso


def connect(registry: ConnectionRegistry, caller: Caller, ttl_s: int) -> None:
    registry.register(
        caller.user_id, caller.device_id, caller.connection_id, now_iso(), int(time.time()) + ttl_s
    )


def disconnect(registry: ConnectionRegistry, caller: Caller) -> None:
    registry.unregister(caller.user_id, caller.device_id, caller.connection_id)
