"""sendToDevice / ackToDevice: the per-device channel that carries end-to-end key material (Olm
messages with Megolm session keys) from one device to others, exactly once (docs/PROTOCOL.md,
To-device messages).

A message is stored in the recipient device's inbox before TO_DEVICE_ACK answers, pushed at once
to the device when it is connected, replayed by sync (before any MESSAGE) until the device
acknowledges it, and deleted then. A retried txnId from the same device stores nothing twice: the
messages are cut into parts of at most PART_MAX, each written in one transaction with its part's
TXN item. Recipients must be the sender's own devices, members of the chat the frame names (the
sender too), or the other side of a direct chat with the sender; a recipient who blocks the
sender is skipped without a word (the count is the same). A user sends at most TO_DEVICE_MESSAGES.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from concurrent.futures import Executor

from chat_backend.dal.chat_keys import direct_chat_id
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.consent_store import ConsentStore
from chat_backend.dal.inbox_store import PART_MAX, InboxStore, OutgoingToDevice, StoredToDevice
from chat_backend.errors import Forbidden
from chat_backend.logic.push import Pusher
from chat_backend.logic.rate_limits import Party, RateLimiter
from chat_backend.models.client_frames import AckToDeviceFrame, SendToDeviceFrame
from chat_backend.models.common import iso_at
from chat_backend.models.events import Caller
from chat_backend.models.queue_payloads import Recipient
from chat_backend.models.server_frames import OkFrame, ToDeviceAckFrame, ToDeviceFrame
from chat_backend.wiring import TO_DEVICE_MESSAGES


def send_to_device(
    inbox: InboxStore,
    chats: ChatStore,
    consent: ConsentStore,
    limiter: RateLimiter,
    pusher: Pusher,
    caller: Caller,
    frame: SendToDeviceFrame,
    clock: Callable[[], float] = time.time,
) -> ToDeviceAckFrame:
    _check_recipients(chats, pusher.pool, caller, frame)
    limiter.take(f"u#{caller.user_id}", "to-device", [Party("msgs", TO_DEVICE_MESSAGES, len(frame.messages))])
    blockers = consent.blockers_of(caller.user_id)
    created_at = iso_at(clock())
    stored: list[StoredToDevice] = []
    # Parts are cut from the frame as sent (blocks filtered inside each), so a retry after a block
    # changed still finds each part where it was.
    for part, start in enumerate(range(0, len(frame.messages), PART_MAX)):
        outgoing = [
            OutgoingToDevice(m.user_id, m.device_id, m.ciphertext_bytes)
            for m in frame.messages[start : start + PART_MAX]
            if m.user_id not in blockers
        ]
        if outgoing:
            stored += (
                inbox.store_part(caller.user_id, caller.device_id, frame.txn_id, part, outgoing, created_at)
                or []
            )
    _push(pusher, stored)
    return ToDeviceAckFrame(request_id=frame.request_id, txn_id=frame.txn_id, count=len(frame.messages))


def ack_to_device(inbox: InboxStore, caller: Caller, frame: AckToDeviceFrame) -> OkFrame:
    """Only ever the caller's own device's inbox: another device's ids are not found there."""
    inbox.acknowledge(caller.user_id, caller.device_id, frame.ids)
    return OkFrame(request_id=frame.request_id)


def to_device_frame(message: StoredToDevice) -> ToDeviceFrame:
    return ToDeviceFrame(
        id=message.id,
        sender=message.sender,
        sender_device=message.sender_device,
        ciphertext=base64.b64encode(message.ciphertext).decode(),
        created_at=message.created_at,
    )


def _check_recipients(chats: ChatStore, pool: Executor, caller: Caller, frame: SendToDeviceFrame) -> None:
    others = sorted({m.user_id for m in frame.messages} - {caller.user_id})
    if not others:
        return  # the caller's own devices
    if frame.chat_id is not None:
        context = chats.members.membership(frame.chat_id, [caller.user_id, *others])
        if context.chat is None or not {caller.user_id, *others} <= set(context.roles):
            raise Forbidden(f"every recipient and the sender must be members of {frame.chat_id}")
        return
    shared = pool.map(lambda u: chats.get_chat(direct_chat_id(caller.user_id, u)) is not None, others)
    if not all(shared):
        raise Forbidden("recipients must share a direct chat with the sender, or name the chat they share")


def _push(pusher: Pusher, stored: list[StoredToDevice]) -> None:
    """Each stored message to its device, if connected (else it waits for the device's sync)."""
    if not stored:
        return
    devices = pusher.registry.devices_of(sorted({s.user_id for s in stored}))

    def push(message: StoredToDevice) -> None:
        connection = devices.get(message.user_id, {}).get(message.device_id)
        if connection is not None:
            recipient = Recipient(
                user_id=message.user_id, device_id=message.device_id, connection_id=connection
            )
            pusher.push(to_device_frame(message).to_json(), [recipient])

    list(pusher.pool.map(push, stored))
