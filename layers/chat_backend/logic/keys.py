"""Keys for end-to-end encryption: devices publish their public keys, and users who share a chat
fetch them to set up sessions (X3DH). The server stores and hands out public keys only; each
one-time prekey is handed out once, and a device whose one-time prekeys ran out is handed
`oneTimePreKey: null` (the client then uses the signed prekey alone)."""

from __future__ import annotations

from concurrent.futures import Executor

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.key_store import DeviceRecord, KeyStore, PreKey, SignedPreKeyRecord
from chat_backend.errors import Forbidden
from chat_backend.logic.members import visible_to
from chat_backend.models.client_frames import FetchKeysFrame, PublishKeysFrame
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import (
    DeviceKeys,
    KeysFrame,
    KeysPublishedFrame,
    OneTimePreKeyEntry,
    SignedPreKeyEntry,
)


def publish_keys(keys: KeyStore, caller: Caller, frame: PublishKeysFrame) -> KeysPublishedFrame:
    spk = frame.signed_pre_key
    remaining = keys.publish(
        caller.user_id,
        caller.device_id,
        frame.identity_key,
        SignedPreKeyRecord(key_id=spk.key_id, public_key=spk.public_key, signature=spk.signature),
        [PreKey(key_id=k.key_id, public_key=k.public_key) for k in frame.one_time_pre_keys],
    )
    return KeysPublishedFrame(one_time_pre_keys=remaining)


def fetch_keys(
    store: ChatStore, keys: KeyStore, pool: Executor, caller: Caller, frame: FetchKeysFrame
) -> KeysFrame:
    """Every device of `userId` that published keys, each with one one-time prekey (or null).
    Only for a user who shares a chat with the caller, or the caller itself (its other devices);
    anyone else is FORBIDDEN, with nothing handed out, whether the user exists or not."""
    own = frame.user_id == caller.user_id
    if not own and not visible_to(store, pool, caller.user_id, [frame.user_id]):
        raise Forbidden("keys of a user you share no chat with")
    devices = [d for d in keys.devices(frame.user_id) if not (own and d.device_id == caller.device_id)]

    def entry(device: DeviceRecord) -> DeviceKeys:
        otpk = keys.claim_one_time(frame.user_id, device.device_id)
        spk = device.signed_pre_key
        return DeviceKeys(
            device_id=device.device_id,
            identity_key=device.identity_key,
            signed_pre_key=SignedPreKeyEntry(
                key_id=spk.key_id, public_key=spk.public_key, signature=spk.signature
            ),
            one_time_pre_key=None
            if otpk is None
            else OneTimePreKeyEntry(key_id=otpk.key_id, public_key=otpk.public_key),
        )

    return KeysFrame(
        request_id=frame.request_id, user_id=frame.user_id, devices=list(pool.map(entry, devices))
    )
