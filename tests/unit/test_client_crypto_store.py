"""The SDK's device store (chat_client/crypto/store.py) and Olm device (crypto/olm_device.py):
encrypted at rest, atomic, one process at a time; Olm sessions between devices that survive a
restart, and one-time keys used once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from chat_client.crypto.olm_device import OlmDevice, OlmError
from chat_client.crypto.store import (
    DeviceStore,
    StoreLocked,
    StoreUnreadable,
    new_store_key,
    store_key_from_file,
)


def test_the_store_is_encrypted_at_rest_and_opens_only_with_its_key_and_identity(tmp_path: Path) -> None:
    # Given a store saved with a secret in it
    key = new_store_key()
    with DeviceStore(tmp_path, "u_alice", "d_phone", key) as store:
        store.save({"secret": "the megolm key"})
    # Then the file holds no plaintext
    raw = (tmp_path / "u_alice.d_phone.store").read_bytes()
    assert b"megolm" not in raw and b"secret" not in raw
    # And it opens with its key, and not with another key or as another device's file
    with DeviceStore(tmp_path, "u_alice", "d_phone", key) as store:
        assert store.load() == {"secret": "the megolm key"}
    with (
        DeviceStore(tmp_path, "u_alice", "d_phone", new_store_key()) as store,
        pytest.raises(StoreUnreadable),
    ):
        store.load()
    (tmp_path / "u_mallory.d_phone.store").write_bytes(raw)
    with DeviceStore(tmp_path, "u_mallory", "d_phone", key) as store, pytest.raises(StoreUnreadable):
        store.load()


def _try_open(directory: str, key: bytes, result: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        DeviceStore(Path(directory), "u_alice", "d_phone", key).open()
        result.put("opened")
    except StoreLocked:
        result.put("locked")


def test_one_process_at_a_time_holds_a_store(tmp_path: Path) -> None:
    # Given alice's phone store open in this process
    key = new_store_key()
    with DeviceStore(tmp_path, "u_alice", "d_phone", key):
        # When another process opens it, Then it is refused at once
        result: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()  # type: ignore[type-arg]
        other = multiprocessing.get_context("spawn").Process(
            target=_try_open, args=(str(tmp_path), key, result)
        )
        other.start()
        other.join(30)
        assert result.get(timeout=5) == "locked"
    # And once closed, it opens again
    with DeviceStore(tmp_path, "u_alice", "d_phone", key) as store:
        assert store.load() is None


def test_a_save_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    key = new_store_key()
    with DeviceStore(tmp_path, "u_alice", "d_phone", key) as store:
        for n in range(3):
            store.save({"n": n})
        assert store.load() == {"n": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "u_alice.d_phone.store",
        "u_alice.d_phone.store.lock",
    ]


def test_a_key_file_is_made_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "store.key"
    first = store_key_from_file(path)
    assert store_key_from_file(path) == first and len(first) == 32
    assert path.stat().st_mode & 0o777 == 0o600


def test_two_devices_talk_over_olm_across_restarts_and_a_one_time_key_starts_one_session(
    tmp_path: Path,
) -> None:
    # Given alice's and bob's devices, bob's keys published
    alice_key, bob_key = new_store_key(), new_store_key()
    with (
        DeviceStore(tmp_path, "u_alice", "d1", alice_key) as a_store,
        DeviceStore(tmp_path, "u_bob", "d1", bob_key) as b_store,
    ):
        alice, bob = OlmDevice(a_store), OlmDevice(b_store)
        published = bob.publish_keys_frame(5)
        assert published["identityKey"] == bob.identity_key and len(published["oneTimePreKeys"]) == 5
        assert bob.publish_keys_frame(0)["oneTimePreKeys"] == []  # published ones are not sent again
        otk = published["oneTimePreKeys"][0]["publicKey"]
        # When alice starts a session with one of them and sends a secret
        first = alice.encrypt(bob.identity_key, otk, b"megolm session key #1")
        # Then bob decrypts it (a pre-key message); a replay of it is refused (its one-time key is
        # used up, and the session has moved on), and the session it made is the only one
        assert first.message_type == 0
        assert bob.decrypt(alice.identity_key, first) == b"megolm session key #1"
        with pytest.raises(OlmError):
            bob.decrypt(alice.identity_key, first)
        assert len(bob.sessions[alice.identity_key]) == 1
    # When both restart from their stores, Then they go on over the same sessions
    with (
        DeviceStore(tmp_path, "u_alice", "d1", alice_key) as a_store,
        DeviceStore(tmp_path, "u_bob", "d1", bob_key) as b_store,
    ):
        alice, bob = OlmDevice(a_store), OlmDevice(b_store)
        reply = bob.encrypt(alice.identity_key, None, b"thanks")
        assert alice.decrypt(bob.identity_key, reply) == b"thanks"
        # And a stranger's device cannot decrypt what alice sent bob
        with DeviceStore(tmp_path, "u_mallory", "d1", new_store_key()) as m_store:
            mallory = OlmDevice(m_store)
            with pytest.raises(OlmError):
                mallory.decrypt(alice.identity_key, alice.encrypt(bob.identity_key, None, b"not for mallory"))
        # And nothing of it is in the files
        for path in tmp_path.glob("*.store"):
            assert b"megolm session key" not in path.read_bytes()
