"""The SDK's encryption engine (chat_client/crypto/engine.py) between three devices, with the
server's part played by plain lists: room keys over Olm, messages over Megolm, rotation when a
device leaves, and state that survives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat_client.crypto.engine import E2EEngine, PeerDevice
from chat_client.crypto.megolm import PendingKey
from chat_client.crypto.store import DeviceStore, new_store_key


class Device:
    def __init__(self, tmp: Path, user: str, device: str = "d1") -> None:
        self.user, self.device, self.key, self.tmp = user, device, new_store_key(), tmp
        self.store = DeviceStore(tmp, user, device, self.key).open()
        self.engine = E2EEngine(self.store)
        self.prekeys = [k["publicKey"] for k in self.engine.olm.publish_keys_frame(10)["oneTimePreKeys"]]

    @property
    def peer(self) -> PeerDevice:
        return PeerDevice(self.user, self.device, self.engine.olm.identity_key)

    def restart(self) -> None:
        self.store.close()
        self.store = DeviceStore(self.tmp, self.user, self.device, self.key).open()
        self.engine = E2EEngine(self.store)


def send(sender: Device, chat_id: str, members: list[Device], text: str) -> bytes:
    """What the client does: pick the session, claim prekeys where no session, hand the key
    over to-device to whoever lacks it (delivered at once here), then encrypt."""
    devices = [m.peer for m in members]
    outbound = sender.engine.outbound(chat_id, devices)
    claimed = {
        d.ref: m.prekeys.pop()
        for d, m in zip(devices, members, strict=True)
        if d in sender.engine.missing_sessions(devices)
    }
    for user, device, payload in sender.engine.room_keys(chat_id, outbound, devices, claimed):
        recipient = next(m for m in members if (m.user, m.device) == (user, device))
        assert recipient.engine.receive_to_device(
            sender.user, sender.device, sender.engine.olm.identity_key, payload
        )
    return sender.engine.encrypt(chat_id, outbound, {"type": "text", "body": text})


def test_three_devices_read_each_message_and_a_removed_one_reads_nothing_after(tmp_path: Path) -> None:
    alice, bob, carol = Device(tmp_path, "u_alice"), Device(tmp_path, "u_bob"), Device(tmp_path, "u_carol")
    # When alice sends to bob and carol
    first = send(alice, "c_1", [bob, carol], "hello both")
    # Then each reads it
    for reader in (bob, carol):
        assert reader.engine.decrypt("c_1", "u_alice", "d1", first).content["body"] == "hello both"
    # When carol is removed and alice sends again (only bob in the member list now)
    second = send(alice, "c_1", [bob], "bob only")
    # Then bob reads it, and carol, even with the ciphertext, cannot
    assert bob.engine.decrypt("c_1", "u_alice", "d1", second).content["body"] == "bob only"
    with pytest.raises(PendingKey):
        carol.engine.decrypt("c_1", "u_alice", "d1", second)


def test_a_room_key_claiming_another_senders_key_is_refused(tmp_path: Path) -> None:
    alice, bob, mallory = (
        Device(tmp_path, "u_alice"),
        Device(tmp_path, "u_bob"),
        Device(tmp_path, "u_mallory"),
    )
    devices = [bob.peer]
    outbound = mallory.engine.outbound("c_1", devices)
    [(_, _, payload)] = mallory.engine.room_keys("c_1", outbound, devices, {bob.peer.ref: bob.prekeys.pop()})
    # When the server (or anyone) passes mallory's payload off as alice's
    # Then bob refuses it: it does not come from alice's key
    assert not bob.engine.receive_to_device("u_alice", "d1", alice.engine.olm.identity_key, payload)


def test_keys_and_sessions_survive_a_restart_of_every_device(tmp_path: Path) -> None:
    alice, bob = Device(tmp_path, "u_alice"), Device(tmp_path, "u_bob")
    send(alice, "c_1", [bob], "one")
    alice.restart()
    bob.restart()
    # When alice sends again after the restart, Then no new key exchange is needed and bob reads it
    devices = [bob.peer]
    outbound = alice.engine.outbound("c_1", devices)
    assert alice.engine.missing_sessions(devices) == []
    assert alice.engine.room_keys("c_1", outbound, devices, {}) == []
    message = alice.engine.encrypt("c_1", outbound, {"type": "text", "body": "two"})
    assert bob.engine.decrypt("c_1", "u_alice", "d1", message).content["body"] == "two"


def test_a_device_back_with_a_new_identity_key_gets_a_new_session_and_the_old_key_holder_none(
    tmp_path: Path,
) -> None:
    # Given alice's session in c_1 shared with bob's phone
    alice, bob = Device(tmp_path, "u_alice"), Device(tmp_path, "u_bob")
    first = send(alice, "c_1", [bob], "before")
    assert bob.engine.decrypt("c_1", "u_alice", "d1", first).content["body"] == "before"
    # When bob's phone comes back under the same device id with a new identity (reinstalled)
    reinstalled = Device(tmp_path / "again", "u_bob")
    second = send(alice, "c_1", [reinstalled], "after")
    # Then the reinstalled phone reads the next message, and the old phone's keys do not open it
    assert reinstalled.engine.decrypt("c_1", "u_alice", "d1", second).content["body"] == "after"
    with pytest.raises(PendingKey):
        bob.engine.decrypt("c_1", "u_alice", "d1", second)
