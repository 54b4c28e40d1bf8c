"""$connect / $disconnect / heartbeat: the registry of which device is reachable on which
connection, the user's presence that follows from it, and what a heartbeat tells the device."""

from __future__ import annotations

import time
from collections.abc import Callable

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.presence_store import PresenceStore, SettleQueue
from chat_backend.logic import presence as presence_logic
from chat_backend.logic.push import Pusher
from chat_backend.models.common import now_iso
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import PongFrame

# PONG lists at most this many moved heads (PROTOCOL.md v1.1); the client syncs them all anyway.
PONG_HEADS_MAX = 500

Clock = Callable[[], float]


def connect(registry: ConnectionRegistry, caller: Caller, ttl_s: int) -> None:
    registry.register(
        caller.user_id, caller.device_id, caller.connection_id, now_iso(), int(time.time()) + ttl_s
    )


def open_connection(
    registry: ConnectionRegistry,
    presence: PresenceStore,
    pusher: Pusher,
    caller: Caller,
    ttl_s: int,
    clock: Clock = time.time,
) -> None:
    """The device is reachable, then the user is ONLINE. The clock is read after the registration,
    so a concurrent last-device disconnect that did not see this device started before it (and
    cannot shorten the lease renewed here: see `PresenceStore.start_grace`)."""
    connect(registry, caller, ttl_s)
    presence_logic.renew(presence, pusher, caller.user_id, clock())


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


def beat(store: ChatStore, presence: PresenceStore, pusher: Pusher, caller: Caller, now: float) -> PongFrame:
    """A heartbeat: the user stays ONLINE and the device's subscriptions live on; the PONG names the
    chats whose head moved since this connection's previous heartbeat, so a connected device
    notices a push it missed (a lost push is found within one heartbeat, without a reconnect)."""
    presence_logic.heartbeat(store, presence, pusher, caller, now)
    since_ms = pusher.registry.beat(caller.user_id, caller.device_id, caller.connection_id, int(now * 1000))
    if since_ms is None:
        return PongFrame()
    moved = store.heads.moved_heads(caller.user_id, sorted(store.listing.chat_ids(caller.user_id)), since_ms)
    heads = dict(sorted(moved.items())[:PONG_HEADS_MAX])
    return PongFrame(heads=heads or None)
