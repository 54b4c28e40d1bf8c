"""Megolm in the SDK (chat_client/crypto/megolm.py): a sender's session per chat, its key handed
over Olm, messages decrypted once, and rotation shutting out who left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chat_client.crypto.megolm import DecryptionFailed, GroupSessions, Outbound, PendingKey
from chat_client.crypto.olm_device import OlmDevice
from chat_client.crypto.store import DeviceStore, new_store_key


class Party:
    """A user's device: its Olm device and its group sessions."""

    def __init__(self, tmp: Path, user: str) -> None:
        self.user, self.device = user, "d1"
        self.store = DeviceStore(tmp, user, "d1", new_store_key()).open()
        self.olm = OlmDevice(self.store)
        self.groups = GroupSessions({}, self.store.pickle_key)
        self.otks = [k["publicKey"] for k in self.olm.publish_keys_frame(5)["oneTimePreKeys"]]

    def receive_room_key(self, sender: Party, olm_message: object) -> bool:
        plaintext = self.olm.decrypt(sender.olm.identity_key, olm_message)  # type: ignore[arg-type]
        return self.groups.add_room_key(
            json.loads(plaintext), sender.user, sender.device, sender.olm.identity_key
        )


def share(sender: Party, chat_id: str, recipients: list[Party], left: bool = False) -> Outbound:
    """The sender's current session for the chat, its key sent over Olm to each recipient."""
    outbound = sender.groups.outbound_for(chat_id, devices=len(recipients) + 1, left=left)
    for r in recipients:
        otk = r.otks.pop() if r.olm.identity_key not in sender.olm.sessions else None
        olm_message = sender.olm.encrypt(r.olm.identity_key, otk, sender.groups.room_key(chat_id, outbound))
        assert r.receive_room_key(sender, olm_message)
    return outbound


def text_message(sender: Party, outbound: Outbound, body: str) -> bytes:
    """The sender's text message to chat c_1 in the session ``outbound``."""
    return sender.groups.encrypt("c_1", outbound, {"type": "text", "body": body})


def shared_message(sender: Party, recipients: list[Party], body: str) -> tuple[Outbound, bytes]:
    """The sender's session for c_1, its key shared with the recipients, and a text message in it."""
    outbound = share(sender, "c_1", recipients)
    return outbound, text_message(sender, outbound, body)


def body_of(groups: GroupSessions, ciphertext: bytes) -> str:
    """The body of u_alice's (device d1) text message to c_1, as these group sessions decrypt it."""
    return groups.decrypt("c_1", "u_alice", "d1", ciphertext).content["body"]


@pytest.fixture
def alice(tmp_path: Path) -> Party:
    return Party(tmp_path, "u_alice")


@pytest.fixture
def bob(tmp_path: Path) -> Party:
    return Party(tmp_path, "u_bob")


@pytest.fixture
def carol(tmp_path: Path) -> Party:
    return Party(tmp_path, "u_carol")


def test_a_message_decrypts_for_each_member_once_and_only_in_its_chat(
    alice: Party, bob: Party, carol: Party
) -> None:
    # Given alice's session for chat c_1, its key shared with bob and carol, When she sends a message
    _, ciphertext = shared_message(alice, [bob, carol], "hello")
    assert b"hello" not in ciphertext
    # Then both decrypt it, from her device, at index 0
    for reader in (bob, carol):
        opened = reader.groups.decrypt("c_1", "u_alice", "d1", ciphertext)
        assert (opened.content, opened.index) == ({"type": "text", "body": "hello"}, 0)
        assert opened.key.sender_key == alice.olm.identity_key
    # And a second decryption (a replay) is refused
    with pytest.raises(DecryptionFailed, match="replay"):
        bob.groups.decrypt("c_1", "u_alice", "d1", ciphertext)
    # And the same ciphertext claimed for another chat, or as sent by carol, is refused
    with pytest.raises(DecryptionFailed):
        carol.groups.decrypt("c_2", "u_alice", "d1", ciphertext)
    with pytest.raises(DecryptionFailed):
        bob.groups.decrypt("c_1", "u_carol", "d1", ciphertext)


def test_a_message_before_its_key_is_pending_and_a_device_without_the_key_reads_nothing(
    alice: Party, bob: Party, carol: Party
) -> None:
    # Given alice's message, its session's key shared with bob only
    _, ciphertext = shared_message(alice, [bob], "only bob")
    # Then carol, who never got the key, has it pending (and can never decrypt it)
    with pytest.raises(PendingKey):
        body_of(carol.groups, ciphertext)


def test_after_a_member_leaves_the_next_message_uses_a_new_session_it_cannot_read(
    alice: Party, bob: Party, carol: Party
) -> None:
    # Given alice's session shared with bob and carol, one message sent
    first, _ = shared_message(alice, [bob, carol], "before")
    # When carol is removed and alice sends again (rotating, the new key to bob only)
    second = share(alice, "c_1", [bob], left=True)
    assert second.session_id != first.session_id
    after = text_message(alice, second, "after")
    # Then bob reads it, and carol, even given the ciphertext, cannot
    assert body_of(bob.groups, after) == "after"
    with pytest.raises(PendingKey):
        body_of(carol.groups, after)


def test_a_late_joiner_reads_from_its_join_and_not_before(alice: Party, bob: Party, carol: Party) -> None:
    # Given alice's message, its session's key shared with bob
    outbound, before = shared_message(alice, [bob], "before carol")
    # When carol joins and gets the current key (no rotation on a join)
    same = share(alice, "c_1", [carol])
    assert same is outbound
    after = text_message(alice, outbound, "with carol")
    # Then she reads what follows, and not what came before
    assert body_of(carol.groups, after) == "with carol"
    with pytest.raises(DecryptionFailed):
        body_of(carol.groups, before)


def test_sessions_survive_a_restart_and_a_key_for_a_held_session_from_another_device_is_refused(
    alice: Party, bob: Party, carol: Party
) -> None:
    # Given alice's message, its session's key shared with bob
    outbound, ciphertext = shared_message(alice, [bob], "kept")
    # When bob's groups are saved and read back
    restored = GroupSessions(json.loads(json.dumps(bob.groups.state())), bob.store.pickle_key)
    assert body_of(restored, ciphertext) == "kept"
    # And a key carol sends claiming alice's session id is refused, as is one whose key is not
    # the session it names
    carols = json.loads(carol.groups.room_key("c_1", carol.groups.outbound_for("c_1", 2, left=False)))
    claimed = carols | {"sessionId": outbound.session_id}
    assert not restored.add_room_key(claimed, "u_carol", "d1", carol.olm.identity_key)
    mismatched = carols | {"sessionId": "not-this-session"}
    assert not restored.add_room_key(mismatched, "u_carol", "d1", carol.olm.identity_key)
    assert restored.add_room_key(carols, "u_carol", "d1", carol.olm.identity_key)


def test_an_attachment_round_trips_encrypted_and_a_changed_byte_is_caught() -> None:
    from chat_client.crypto.attachments import (
        AttachmentCorrupt,
        AttachmentKey,
        decrypt_attachment,
        encrypt_attachment,
    )

    # Given 5 MB of file bytes
    plaintext = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    # When encrypted, Then the bytes that go to the bucket are not the file's
    ciphertext, key = encrypt_attachment(plaintext)
    assert len(ciphertext) == len(plaintext) and ciphertext[:4096] != plaintext[:4096]
    # And with the key (as carried inside the encrypted message) they decrypt to the file
    carried = AttachmentKey.from_json(json.loads(json.dumps(key.to_json())))
    assert decrypt_attachment(ciphertext, carried) == plaintext
    # And one changed byte is refused before anything is decrypted
    with pytest.raises(AttachmentCorrupt):
        decrypt_attachment(ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]), carried)
    # And two encryptions of the same file share nothing
    assert encrypt_attachment(plaintext)[0][:64] != ciphertext[:64]
