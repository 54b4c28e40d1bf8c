"""Keys for end-to-end encryption: devices publish their public keys, and anyone fetches them to
set up sessions (X3DH): a first encrypted message to a new contact needs them. The server stores
and hands out public keys only; each one-time prekey is handed out once. They cannot be drained:
one user gets at most `OTPK_CLAIMS` of another user's one-time prekeys per device at once, then one
per `1 / OTPK_CLAIMS.per_s` seconds; past that, and to a user the owner blocks, and when a device
has none left, the answer is the same `oneTimePreKey: null` (the client then uses the signed
prekey alone), so it reveals neither a block nor a limit."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

from chat_backend.dal.consent_store import ConsentStore
from chat_backend.dal.key_store import DeviceChange, DeviceRecord, KeyStore, PreKey, SignedPreKeyRecord
from chat_backend.errors import RateLimited
from chat_backend.logic.rate_limits import Party, RateLimiter
from chat_backend.models.client_frames import (
    ClaimKeysFrame,
    FetchKeysFrame,
    PublishKeysFrame,
    QueryDevicesFrame,
)
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import (
    ClaimedFrame,
    ClaimedKey,
    DeviceKeys,
    DevicesFrame,
    KeysFrame,
    KeysPublishedFrame,
    OneTimePreKeyEntry,
    SignedPreKeyEntry,
    UserDevice,
)
from chat_backend.wiring import Rate

# One user's claims on another user's one-time prekeys: a session per device of theirs at once
# (up to 10 devices), then one more device a minute. (Sessions last: a client fetches once.)
OTPK_CLAIMS = Rate(10, 1 / 60)


def publish_keys(
    keys: KeyStore,
    caller: Caller,
    frame: PublishKeysFrame,
    announce: Callable[[Caller, DeviceChange], object] | None = None,
) -> KeysPublishedFrame:
    """Store the device's keys; a device new to the user, or a new identity key, is announced
    (`announce`: logic/device_lists.py DeviceNews); a top-up with the same identity key is not."""
    spk = frame.signed_pre_key
    published = keys.publish(
        caller.user_id,
        caller.device_id,
        frame.identity_key,
        SignedPreKeyRecord(key_id=spk.key_id, public_key=spk.public_key, signature=spk.signature),
        [PreKey(key_id=k.key_id, public_key=k.public_key) for k in frame.one_time_pre_keys],
        frame.signing_key,
    )
    if published.change is not None and announce is not None:
        announce(caller, published.change)
    return KeysPublishedFrame(one_time_pre_keys=published.remaining)


def fetch_keys(
    consent: ConsentStore,
    keys: KeyStore,
    limiter: RateLimiter,
    pool: Executor,
    caller: Caller,
    frame: FetchKeysFrame,
) -> KeysFrame:
    """Every device of `userId` that published keys (none for a user who does not exist), each with
    one one-time prekey or null; the caller's own other devices when it names itself."""
    own = frame.user_id == caller.user_id
    devices = [d for d in keys.devices(frame.user_id) if not (own and d.device_id == caller.device_id)]
    may_claim = own or _may_claim(consent, limiter, caller.user_id, frame.user_id, len(devices))

    def entry(device: DeviceRecord) -> DeviceKeys:
        otpk = keys.claim_one_time(frame.user_id, device.device_id) if may_claim else None
        return DeviceKeys(
            device_id=device.device_id,
            identity_key=device.identity_key,
            signing_key=device.signing_key,
            signed_pre_key=_signed_entry(device),
            one_time_pre_key=_otpk_entry(otpk),
        )

    return KeysFrame(
        request_id=frame.request_id, user_id=frame.user_id, devices=list(pool.map(entry, devices))
    )


def query_devices(keys: KeyStore, pool: Executor, frame: QueryDevicesFrame) -> DevicesFrame:
    """Every device that published keys of each named user: public keys only, nothing claimed
    (a user's device list is what it shows anyone it may write to)."""
    users = list(dict.fromkeys(frame.user_ids))
    listed = pool.map(lambda u: [(u, d) for d in keys.devices(u)], users)
    return DevicesFrame(
        request_id=frame.request_id,
        devices=[
            UserDevice(
                user_id=user,
                device_id=d.device_id,
                identity_key=d.identity_key,
                signing_key=d.signing_key,
                signed_pre_key=_signed_entry(d),
            )
            for found in listed
            for user, d in found
        ],
    )


def claim_keys(
    consent: ConsentStore,
    keys: KeyStore,
    limiter: RateLimiter,
    pool: Executor,
    caller: Caller,
    frame: ClaimKeysFrame,
) -> ClaimedFrame:
    """One one-time prekey of each named device, under the rules of fetchKeys (per owner: not
    blocked, within the claimer's budget; else null, as when a device has none left)."""
    wanted = list(dict.fromkeys((d.user_id, d.device_id) for d in frame.devices))
    per_owner: dict[str, int] = {}
    for owner, _ in wanted:
        per_owner[owner] = per_owner.get(owner, 0) + 1
    allowed = {
        owner
        for owner, count in per_owner.items()
        if owner == caller.user_id or _may_claim(consent, limiter, caller.user_id, owner, count)
    }

    def claim(device: tuple[str, str]) -> ClaimedKey:
        owner, device_id = device
        otpk = keys.claim_one_time(owner, device_id) if owner in allowed else None
        return ClaimedKey(user_id=owner, device_id=device_id, one_time_pre_key=_otpk_entry(otpk))

    return ClaimedFrame(request_id=frame.request_id, keys=list(pool.map(claim, wanted)))


def _signed_entry(device: DeviceRecord) -> SignedPreKeyEntry:
    spk = device.signed_pre_key
    return SignedPreKeyEntry(key_id=spk.key_id, public_key=spk.public_key, signature=spk.signature)


def _otpk_entry(otpk: PreKey | None) -> OneTimePreKeyEntry | None:
    return None if otpk is None else OneTimePreKeyEntry(key_id=otpk.key_id, public_key=otpk.public_key)


def _may_claim(consent: ConsentStore, limiter: RateLimiter, claimer: str, owner: str, devices: int) -> bool:
    """Whether `claimer` gets one-time prekeys of `owner`'s devices now: not blocked by the owner,
    and within its budget of the owner's prekeys (a bucket per claimer on the owner's item)."""
    if devices == 0 or owner in consent.blockers_of(claimer):
        return False
    try:
        limiter.take(f"u#{owner}", "otpk", [Party(f"k:{claimer}", OTPK_CLAIMS, cost=devices)])
    except RateLimited:
        return False
    return True
