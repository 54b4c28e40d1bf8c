"""What this device knows of other users' devices, and whether to trust them (docs/E2E.md, Trust).

Trust on first use: the devices a user has when first seen are remembered without a notice. After
that, a device new to a known user is announced (`added`), and a known device whose identity key
changed is announced (`key_changed`): its earlier sessions are useless to whoever took it over,
so it is a warning. A user whose safety number was verified out of band (`verify`) is held to the
devices it had then: a changed key makes sending to that user refuse (IdentityChanged) until the
application accepts the change (`accept`), which also lifts the verification.

Safety numbers: 60 digits per pair of users, the same on both sides, the way Signal builds them:
30 digits per user from an iterated SHA-512 over the user id and its devices' identity keys, the
two halves ordered by user id. It changes when either user's devices change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

SAFETY_ITERATIONS = 5200  # Signal's NumericFingerprint
SAFETY_VERSION = b"chat-safety-number-v1"


class IdentityChanged(Exception):
    """A verified user's device changed its identity key: sending to that user is refused until the
    application accepts the change (SecureChat.accept)."""

    def __init__(self, user_id: str, device_ids: list[str]) -> None:
        super().__init__(f"{user_id}: the identity key of device(s) {', '.join(device_ids)} changed")
        self.user_id = user_id
        self.device_ids = device_ids


@dataclass(frozen=True)
class DeviceNotice:
    user_id: str
    device_id: str
    change: Literal["added", "key_changed"]
    identity_key: str
    verified_user: bool  # the user was verified: a key change blocks sending until accepted


class TrustStore:
    """Kept in the device store (`state` is the dict to persist): per user, its devices' identity
    keys as last accepted, the verification, and devices whose key changed unaccepted."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.users: dict[str, dict[str, Any]] = state

    def observe(self, user_id: str, devices: dict[str, str]) -> list[DeviceNotice]:
        """Take a user's device list (deviceId -> curve25519 key) as the server gave it; the notices
        it brings. A verified user's changed key is held aside, not accepted."""
        known = self.users.get(user_id)
        if known is None:
            self.users[user_id] = {"devices": dict(devices), "verified": False, "changed": {}}
            return []
        notices: list[DeviceNotice] = []
        verified = bool(known["verified"])
        for device_id, key in devices.items():
            had = known["devices"].get(device_id)
            if had == key or known["changed"].get(device_id) == key:
                continue
            if had is None:
                known["devices"][device_id] = key
                notices.append(DeviceNotice(user_id, device_id, "added", key, verified))
            elif verified:
                known["changed"][device_id] = key
                notices.append(DeviceNotice(user_id, device_id, "key_changed", key, True))
            else:
                known["devices"][device_id] = key
                notices.append(DeviceNotice(user_id, device_id, "key_changed", key, False))
        return notices

    def key_of(self, user_id: str, device_id: str) -> str | None:
        """The identity key this device accepts for (user, device); None when unknown or changed."""
        known = self.users.get(user_id)
        if known is None or device_id in known["changed"]:
            return None
        key = known["devices"].get(device_id)
        return str(key) if key else None

    def check_sendable(self, user_id: str) -> None:
        known = self.users.get(user_id)
        if known and known["changed"]:
            raise IdentityChanged(user_id, sorted(known["changed"]))

    def is_verified(self, user_id: str) -> bool:
        known = self.users.get(user_id)
        return bool(known and known["verified"] and not known["changed"])

    def verify(self, user_id: str) -> None:
        """The user's safety number was compared out of band: hold it to its devices as they are."""
        self.users.setdefault(user_id, {"devices": {}, "verified": False, "changed": {}})["verified"] = True

    def accept(self, user_id: str) -> None:
        """Accept the changed keys of a user's devices; the user is no longer verified."""
        known = self.users.get(user_id)
        if known is not None:
            known["devices"].update(known["changed"])
            known["changed"] = {}
            known["verified"] = False


def safety_number(user_a: str, keys_a: dict[str, str], user_b: str, keys_b: dict[str, str]) -> str:
    """60 digits in 12 groups of five, the same whichever user asks."""
    halves = sorted([(user_a, _fingerprint(user_a, keys_a)), (user_b, _fingerprint(user_b, keys_b))])
    digits = halves[0][1] + halves[1][1]
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))


def _fingerprint(user_id: str, keys: dict[str, str]) -> str:
    devices = "".join(f"{device}={key};" for device, key in sorted(keys.items())).encode()
    digest = hashlib.sha512(SAFETY_VERSION + user_id.encode() + b"\0" + devices).digest()
    for _ in range(SAFETY_ITERATIONS):
        digest = hashlib.sha512(digest + devices).digest()
    return "".join(f"{int.from_bytes(digest[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5))
