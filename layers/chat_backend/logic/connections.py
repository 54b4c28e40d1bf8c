"""$connect / $disconnect: the registry of which device is reachable on which connection, and the
user's presence that follows from it."""

from __future__ import annotations

import time
from collections.abc import Callable

from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue
from chat_backend.dal.presence_store import PresenceStore, SettleQueue
from chat_backend.logic import presence as presence_logic
from chat_backend.models import Caller, now_iso

Clock = Callable[[], float]


def connect(registry: ConnectionRegistry, caller: Caller, ttl_s: int) -> None:
    registry.register(
        caller.user_id, caller.device_id, caller.connection_id, now_iso(), int(time.time()) + ttl_s
    )


def open_connection(
    registry: ConnectionRegistry,
    presence: PresenceStore,
    queue: DeliveryQueue,
    caller: Caller,
    ttl_s: int,
    clock: Clock = time.time,
) -> None:
    """The device is reachable, then the user is ONLINE. The clock is read after the registration,
    so a concurrent last-device disconnect that did not see this device started before it (and
    cannot shorten the lease renewed here: see `PresenceStore.start_grace`)."""
    connect(registry, caller, ttl_s)
    presence_logic.renew(presence, registry, queue, caller.user_id, clock())


def close_connection(
    registry: ConnectionRegistry,
    presence: PresenceStore,
    settle_queue: SettleQueue,
    caller: Caller,
    clock: Clock = time.time,
) -> None:
    """The device is no longer reachable; if it was the user's last, the grace starts. The clock
    is read before the registry write, for the same reason as in `open_connection`."""
    now = clock()
    remaining = registry.unregister_and_list(caller.user_id, caller.device_id, caller.connection_id)
    presence_logic.device_left(presence, settle_queue, caller.user_id, remaining, now)
