"""Trust in other users' devices (chat_client/crypto/trust.py) and this device's one-time key top-up
(chat_client/secure.py), without a server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from chat_client.crypto.olm_device import ONE_TIME_KEYS_TARGET, OlmDevice
from chat_client.crypto.store import DeviceStore, new_store_key
from chat_client.crypto.trust import IdentityChanged, TrustStore, safety_number
from chat_client.secure import SecureChat


def test_first_seen_devices_are_trusted_silently_and_later_changes_are_announced() -> None:
    trust = TrustStore({})
    # Given bob first seen with one device: no notice (trust on first use)
    assert trust.observe("bob", {"d1": "K1"}) == []
    # When he adds a device, Then it is announced as added
    [added] = trust.observe("bob", {"d1": "K1", "d2": "K2"})
    assert (added.device_id, added.change, added.verified_user) == ("d2", "added", False)
    # When an unverified user's device changes its key, Then it is announced and the new key kept
    [changed] = trust.observe("bob", {"d1": "K1b", "d2": "K2"})
    assert (changed.device_id, changed.change) == ("d1", "key_changed")
    assert trust.key_of("bob", "d1") == "K1b"
    trust.check_sendable("bob")  # sending goes on
    # And the same list again says nothing
    assert trust.observe("bob", {"d1": "K1b", "d2": "K2"}) == []


def test_a_verified_users_changed_key_refuses_sending_until_accepted() -> None:
    # Given bob verified with device d1
    trust = TrustStore({})
    trust.observe("bob", {"d1": "K1"})
    trust.verify("bob")
    assert trust.is_verified("bob")
    # When d1 shows up with another identity key
    [notice] = trust.observe("bob", {"d1": "EVIL"})
    # Then it is a key change of a verified user, the old key is not replaced, sending refuses,
    # and the device's key is not believed for incoming key material
    assert (notice.change, notice.verified_user) == ("key_changed", True)
    with pytest.raises(IdentityChanged) as refused:
        trust.check_sendable("bob")
    assert refused.value.device_ids == ["d1"]
    assert trust.key_of("bob", "d1") is None and not trust.is_verified("bob")
    # And seeing it again does not announce it twice
    assert trust.observe("bob", {"d1": "EVIL"}) == []
    # When the change is accepted, Then sending resumes with the new key, bob unverified
    trust.accept("bob")
    trust.check_sendable("bob")
    assert trust.key_of("bob", "d1") == "EVIL" and not trust.is_verified("bob")


def test_safety_numbers_are_the_same_both_ways_and_change_with_any_device() -> None:
    alice, bob = {"d1": "A1", "d2": "A2"}, {"d1": "B1"}
    # Given the number alice computes with bob
    number = safety_number("alice", alice, "bob", bob)
    # Then it is 12 groups of 5 digits, the one bob computes with alice
    assert [len(g) for g in number.split(" ")] == [5] * 12 and number.replace(" ", "").isdigit()
    assert safety_number("bob", bob, "alice", alice) == number
    # And a changed key, an added device, or another user gives another number
    assert safety_number("alice", alice, "bob", {"d1": "B1x"}) != number
    assert safety_number("alice", alice, "bob", {**bob, "d2": "B2"}) != number
    assert safety_number("alice", alice, "mallory", bob) != number


class FakeKeyServer:
    """publishKeys as the server answers it: how many unused one-time keys the device holds."""

    def __init__(self) -> None:
        self.held = 0
        self.published: list[dict[str, Any]] = []
        self.user_id, self.device_id = "bob", "d1"
        self.heads: dict[str, int] = {}  # each chat's head after the first sync
        self.to_device: asyncio.Queue[Any] = asyncio.Queue()  # what SecureChat reads while it runs
        self.messages: asyncio.Queue[Any] = asyncio.Queue()
        self.device_changes: asyncio.Queue[Any] = asyncio.Queue()

    async def publish_keys(
        self, identity_key: str, signed: dict[str, Any], otks: list[dict[str, Any]], signing_key: str
    ) -> dict[str, Any]:
        self.published.append({"signedPreKey": signed, "oneTimePreKeys": otks})
        self.held += len(otks)
        return {"type": "KEYS_PUBLISHED", "oneTimePreKeys": self.held}


async def test_one_time_keys_are_topped_up_once_sessions_used_half_and_the_fallback_rotates(
    tmp_path: Path,
) -> None:
    # Given bob's device started: it publishes its keys up to the target
    server = FakeKeyServer()
    store = DeviceStore(tmp_path, "bob", "d1", new_store_key()).open()
    bob = SecureChat(server, store)  # type: ignore[arg-type]
    await bob.start()
    await asyncio.sleep(0)
    await bob.close()
    assert server.held == ONE_TIME_KEYS_TARGET
    first_signed = server.published[-1]["signedPreKey"]
    published = len(server.published)
    # When other devices begin sessions with half of them (each pre-key message uses one)
    otks = [k["publicKey"] for p in server.published for k in p["oneTimePreKeys"]]

    async def begin_sessions(count: int) -> None:
        for _ in range(count):
            peer = OlmDevice(
                DeviceStore(tmp_path / f"peer{len(otks)}", "alice", "d1", new_store_key()).open()
            )
            prekey_message = peer.encrypt(bob.engine.olm.identity_key, otks.pop(), b"room key")
            bob.engine.olm.decrypt(peer.identity_key, prekey_message)
            server.held -= 1  # the server handed that key out
        await bob._top_up(rotate_fallback=True)

    await begin_sessions(ONE_TIME_KEYS_TARGET // 2)
    # Then nothing was published (half still held)
    assert len(server.published) == published
    # When one more session begins, Then bob tops up to the target with a new fallback key
    await begin_sessions(1)
    assert len(server.published) == published + 1 and server.held == ONE_TIME_KEYS_TARGET
    assert server.published[-1]["signedPreKey"]["publicKey"] != first_signed["publicKey"]
    store.close()
