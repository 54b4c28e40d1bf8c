"""What end-to-end encryption costs (docs/E2E.md), measured through the SDK's engine
(chat_client/crypto/engine.py) as SecureChat.send_text and its receiving side call it:

- per message, on the client: the Megolm encrypt and decrypt of a 100-character text, alone
  (GroupSessions, no store) and through E2EEngine (with the DeviceStore save it does each time:
  AES-GCM over the whole device state, fsync, rename), p50 / p99 over 1,000 messages, a new
  session every 100 of them as the engine rotates; and Olm session setup per device (a claimed
  one-time key: encrypt; the pre-key message: decrypt);
- on the wire: the text, the MESSAGE ciphertext and the `send` frame, and one room-key to-device
  message (its Olm ciphertext, and what it adds to a `sendToDevice` frame);
- a rotation in a group of `members` members with one device each (the receivers are vodozemac
  accounts in memory, each of which decrypts its key): the to-device messages, the client's time
  to make them with fresh Olm sessions (the group's first message: a one-time key claimed per
  device) and with the sessions it has (the rotation 100 messages later), their bytes and
  `sendToDevice` frames, and the DynamoDB write units the server spends storing them, computed
  from the very items dal/inbox_store.py writes (bench/write_units.py). `run_rotation_over_stack`
  then sends the same messages through a local stack and reads the units DynamoDB Local reports.

The client figures need no stack: they are measured once, before the timing profiles. The devices
and frames they use are in bench/encryption_setup.py, the printing in bench/encryption_report.py.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vodozemac

from bench.encryption_setup import (
    DEVICE_ID_CHARS,
    ID_MAX_CHARS,
    TEXT,
    Device,
    Receiver,
    Stopwatch,
    send_frame,
    timed,
    to_device_frames,
)
from bench.report import percentiles
from bench.write_units import inbox_transactions, item_bytes, transact_write_units
from chat_backend.models.common import MAX_FRAME_BYTES
from chat_backend.models.frame_fields import MAX_TO_DEVICE_BYTES
from chat_client import ChatClient, mint_token
from chat_client.crypto.engine import PeerDevice, unpack_to_device
from chat_client.crypto.megolm import (
    LARGE_GROUP,
    ROTATE_AFTER_MESSAGES,
    ROTATE_AFTER_MESSAGES_LARGE,
    GroupSessions,
)
from chat_client.crypto.store import new_store_key
from chat_client.to_device import MESSAGES_PER_FRAME
from chat_client.wire import encode_frame
from local_stack.child import RunningStack

SETUP_PAIRS = 50  # device pairs timed through the engine for Olm session setup


# --- per message ---------------------------------------------------------------------------------------


def per_message(directory: Path, messages: int) -> dict[str, Any]:
    """A direct chat of two devices: `messages` texts, each sent as SecureChat.send_text does
    (outbound, missing_sessions, room_keys, encrypt) and decrypted by the other device."""
    sender, receiver = Device.create(directory), Device.create(directory)
    chat_id = f"g_{uuid.uuid4().hex}"
    devices = [receiver.peer]
    claimed = receiver.one_time_key()  # what claimKeys would answer for it
    watch = Stopwatch()
    ciphertext = b""
    for _ in range(messages):
        with watch.time("send path (outbound + room_keys + encrypt)"):
            outbound = sender.engine.outbound(chat_id, devices)
            missing = sender.engine.missing_sessions(devices)
            prekeys: dict[str, str | None] = {d.ref: claimed for d in missing}
            to_device = sender.engine.room_keys(chat_id, outbound, devices, prekeys)
            with watch.time("encrypt: E2EEngine.encrypt (Megolm + store save)"):
                ciphertext = sender.engine.encrypt(chat_id, outbound, {"type": "text", "body": TEXT})
        receiver.take(sender, to_device)
        with watch.time("decrypt: E2EEngine.decrypt (Megolm + store save)"):
            receiver.engine.decrypt(chat_id, sender.user_id, sender.device_id, ciphertext)  # or raises
        with watch.time("store save alone (E2EEngine.save)"):
            sender.engine.save()
    megolm_alone(chat_id, messages, watch)
    return {
        "messages": messages,
        "text_chars": len(TEXT),
        "store_bytes": sender.engine.olm.store.path.stat().st_size,
        "us": watch.summary(),
        "ciphertext": ciphertext,
        "chat_id": chat_id,
    }


def megolm_alone(chat_id: str, messages: int, watch: Stopwatch) -> None:
    """The same texts through GroupSessions with no store: the cryptography alone."""
    key = new_store_key()
    out_sessions, in_sessions = GroupSessions({}, key), GroupSessions({}, key)
    for n in range(messages):
        outbound = out_sessions.outbound_for(chat_id, 1, left=n % ROTATE_AFTER_MESSAGES == 0)
        if outbound.messages == 0:
            in_sessions.add_room_key(json.loads(out_sessions.room_key(chat_id, outbound)), "u", "d", "k")
        with watch.time("encrypt: Megolm alone (GroupSessions)"):
            ciphertext = out_sessions.encrypt(chat_id, outbound, {"type": "text", "body": TEXT})
        with watch.time("decrypt: Megolm alone (GroupSessions)"):
            in_sessions.decrypt(chat_id, "u", "d", ciphertext)


def session_setup(directory: Path, pairs: int) -> dict[str, Any]:
    """Olm session setup between fresh device pairs through the engine (with its store saves),
    and the same with vodozemac alone."""
    watch = Stopwatch()
    for _ in range(pairs):
        sender, receiver = Device.create(directory), Device.create(directory)
        chat_id = f"g_{uuid.uuid4().hex}"
        devices = [receiver.peer]
        outbound = sender.engine.outbound(chat_id, devices)
        prekeys: dict[str, str | None] = {receiver.peer.ref: receiver.one_time_key()}
        with watch.time("engine: claimed-key encrypt (E2EEngine.room_keys, 1 device)"):
            to_device = sender.engine.room_keys(chat_id, outbound, devices, prekeys)
        with watch.time("engine: pre-key decrypt (E2EEngine.receive_to_device)"):
            receiver.take(sender, to_device)
        plain = sender.engine.groups.room_key(chat_id, outbound)
        alice, bob = vodozemac.Account(), Receiver.create()
        with watch.time("vodozemac alone: outbound session + encrypt"):
            session = alice.create_outbound_session(
                vodozemac.Curve25519PublicKey.from_base64(bob.peer.identity_key),
                vodozemac.Curve25519PublicKey.from_base64(bob.one_time_key),
            )
            message = session.encrypt(plain)
        pre_key = message.to_pre_key()
        assert pre_key is not None
        with watch.time("vodozemac alone: inbound session from the pre-key message"):
            bob.account.create_inbound_session(alice.curve25519_key, pre_key)
    return {"pairs": pairs, "us": watch.summary()}


# --- a rotation in a large group -------------------------------------------------------------------


@dataclass
class Rotation:
    """One rotation's to-device messages and what they cost."""

    kind: str
    client_s: float
    messages: list[tuple[str, str, bytes]]
    olm_types: dict[int, int]
    frames: list[dict[str, Any]]
    transactions: list[list[dict[str, dict[str, Any]]]]

    def row(self) -> dict[str, Any]:
        items = [item_bytes(i) for txn in self.transactions for i in txn]
        frame_bytes = [len(encode_frame(f).encode()) for f in self.frames]
        return {
            "rotation": self.kind,
            "to_device_messages": len(self.messages),
            "olm_message_types": self.olm_types,
            "client_s": round(self.client_s, 2),
            "client_ms_per_device": round(self.client_s * 1000 / max(1, len(self.messages)), 2),
            "ciphertext_bytes": sum(len(c) for _, _, c in self.messages),
            "send_to_device_frames": len(self.frames),
            "frame_bytes_max": max(frame_bytes),
            "frame_bytes_total": sum(frame_bytes),
            "frame_bytes_limit": MAX_FRAME_BYTES,
            "transact_write_items": len(self.transactions),
            "items": len(items),
            "item_bytes_min_max": [min(items), max(items)],
            "write_units": sum(transact_write_units(t) for t in self.transactions),
        }


@dataclass
class LargeGroup:
    sender: Device
    receivers: list[Receiver]
    chat_id: str
    rotations: list[Rotation] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def devices(self) -> list[PeerDevice]:
        return [r.peer for r in self.receivers]

    def rotate(self, kind: str, prekeys: dict[str, str | None]) -> Rotation:
        engine, devices = self.sender.engine, self.devices
        outbound = engine.outbound(self.chat_id, devices)
        assert outbound.messages == 0, "the engine did not rotate"
        messages, seconds = timed(lambda: engine.room_keys(self.chat_id, outbound, devices, prekeys))
        types: dict[int, int] = {}
        for _, _, payload in messages:
            kind_of = unpack_to_device(payload)[1].message_type
            types[kind_of] = types.get(kind_of, 0) + 1
        frames = to_device_frames(messages, self.chat_id)
        transactions = inbox_transactions(self.sender.user_id, self.sender.device_id, frames)
        rotation = Rotation(kind, seconds, messages, types, frames, transactions)
        self.rotations.append(rotation)
        return rotation


def large_group(directory: Path, members: int) -> LargeGroup:
    """The sender's two rotations in a group of `members` (one device each): the first message
    (a one-time key claimed for every device), then, ROTATE_AFTER_MESSAGES messages later, the
    rotation over the Olm sessions it has. Every receiver decrypts its first key."""
    receivers, accounts_s = timed(lambda: [Receiver.create() for _ in range(members - 1)])
    group = LargeGroup(Device.create(directory), receivers, f"g_{uuid.uuid4().hex}")
    group.extra["receiver_accounts_s"] = round(accounts_s, 2)
    engine = group.sender.engine
    assert len(engine.missing_sessions(group.devices)) == len(receivers)
    prekeys: dict[str, str | None] = {r.peer.ref: r.one_time_key for r in receivers}
    fresh = group.rotate("fresh Olm sessions (claimed one-time keys)", prekeys)
    # Every receiver decrypts its pre-key message: a new inbound Olm session, then the room key.
    decrypt_us: list[float] = []
    for receiver, (_, _, payload) in zip(receivers, fresh.messages, strict=True):
        sender_key, message = unpack_to_device(payload)
        pre_key = vodozemac.AnyOlmMessage.from_parts(message.message_type, message.body).to_pre_key()
        assert pre_key is not None
        started = time.perf_counter()
        _, plaintext = receiver.account.create_inbound_session(
            vodozemac.Curve25519PublicKey.from_base64(sender_key), pre_key
        )
        decrypt_us.append((time.perf_counter() - started) * 1e6)
        assert json.loads(bytes(plaintext))["chatId"] == group.chat_id
    group.extra["receivers_decrypting_us"] = percentiles(decrypt_us, (50, 99))
    # Messages until the engine's next rotation, as the SDK sends them, on the sender's big store.
    watch = Stopwatch()
    for _ in range(ROTATE_AFTER_MESSAGES):
        with watch.time("send path (outbound + room_keys + encrypt)"):
            outbound = engine.outbound(group.chat_id, group.devices)
            engine.room_keys(group.chat_id, outbound, group.devices, {})
            engine.encrypt(group.chat_id, outbound, {"type": "text", "body": TEXT})
    group.extra["per_message_big_store_us"] = watch.summary()
    group.extra["big_store_bytes"] = engine.olm.store.path.stat().st_size
    # Past 1,000 devices the session lasts 1,000 messages: skip to the last rather than send them.
    current = engine.groups.outbound[group.chat_id]
    current.messages = max(current.messages, ROTATE_AFTER_MESSAGES_LARGE if members - 1 > LARGE_GROUP else 0)
    group.rotate("existing Olm sessions", {})
    group.extra["vodozemac_alone_s"] = vodozemac_alone(group)
    return group


def vodozemac_alone(group: LargeGroup) -> dict[str, float]:
    """The Olm encryption of one rotation without the engine's store: the cryptography alone."""
    plaintext = group.sender.engine.groups.room_key(
        group.chat_id, group.sender.engine.groups.outbound[group.chat_id]
    )
    account = vodozemac.Account()
    sessions, fresh_s = timed(
        lambda: [
            account.create_outbound_session(
                vodozemac.Curve25519PublicKey.from_base64(r.peer.identity_key),
                vodozemac.Curve25519PublicKey.from_base64(r.one_time_key),
            )
            for r in group.receivers
        ]
    )
    _, encrypt_s = timed(lambda: [s.encrypt(plaintext) for s in sessions])
    return {"fresh_sessions_s": round(fresh_s + encrypt_s, 3), "existing_sessions_s": round(encrypt_s, 3)}


# --- the whole client part ------------------------------------------------------------------------


@dataclass
class ClientFigures:
    rows: list[dict[str, Any]]
    group: LargeGroup


def wire_sizes(chat_id: str, ciphertext: bytes, room_key: bytes) -> dict[str, Any]:
    entry = {"userId": str(uuid.uuid4()), "deviceId": "x" * DEVICE_ID_CHARS}
    entry["ciphertext"] = base64.b64encode(room_key).decode()
    # The same room key to a full frame of devices whose ids are as long as the protocol allows.
    longest = "x" * ID_MAX_CHARS
    frames = to_device_frames([(longest, longest, room_key)] * MESSAGES_PER_FRAME, chat_id)
    items = [item_bytes(i) for txn in inbox_transactions(longest, longest, frames) for i in txn]
    return {
        "text_bytes": len(TEXT.encode()),
        "message_ciphertext_bytes": len(ciphertext),
        "send_frame_bytes": len(send_frame(chat_id, ciphertext).encode()),
        "send_frame_bytes_unencrypted": len(send_frame(chat_id, TEXT.encode()).encode()),
        "room_key_ciphertext_bytes": len(room_key),
        "room_key_in_frame_bytes": len(encode_frame(entry).encode()) + 1,  # and a comma
        "to_device_ciphertext_limit": MAX_TO_DEVICE_BYTES,
        "full_frame_bytes_at_longest_ids": len(encode_frame(frames[0]).encode()),
        "item_bytes_at_longest_ids": max(items),
        "frame_bytes_limit": MAX_FRAME_BYTES,
    }


def run_encryption_client(members: int, messages: int) -> ClientFigures:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chat-bench-e2e-") as tmp:
        directory = Path(tmp)
        message = per_message(directory, messages)
        setup = session_setup(directory, SETUP_PAIRS)
        group = large_group(directory, members)
        first = group.rotations[0]
        sizes = wire_sizes(message["chat_id"], message["ciphertext"], first.messages[0][2])
    rows: list[dict[str, Any]] = [
        {
            "section": "encryption per message",
            **{k: v for k, v in message.items() if k not in ("ciphertext", "chat_id")},
        },
        {"section": "encryption Olm session setup", **setup},
        {"section": "encryption bytes", **sizes},
        *({"section": "encryption rotation", "members": members, **r.row()} for r in group.rotations),
        {"section": "encryption rotation details", "members": members, **group.extra},
    ]
    rows[-1]["client_part_s"] = round(time.perf_counter() - started, 1)
    return ClientFigures(rows, group)


# --- over the local stack ------------------------------------------------------------------------


# The group over the stack is made by one createChat frame, which must stay within 128 KiB.
STACK_GROUP_MAX = 2000


async def run_rotation_over_stack(stack: RunningStack, group: LargeGroup) -> dict[str, Any]:
    """The first rotation's to-device messages sent for real by the sender's ChatClient, to the
    members of a group of the same users: the time until the last sendToDevice is answered and
    the write units DynamoDB Local reports (the members are offline: nothing is pushed)."""
    sender = group.sender
    client = ChatClient(
        stack.url, mint_token(sender.user_id, sender.device_id, secret=stack.secret), auto_delivered=False
    )
    await client.connect()
    try:
        members = [r.user_id for r in group.receivers]
        chat = await client.request(
            {"action": "createChat", "kind": "group", "name": "bench e2e", "members": members}, timeout=120
        )
        rotation = group.rotations[0]
        # The messages name the client part's chat; the members are the same.
        stack.reset_stats()
        started = time.perf_counter()
        count = await client.send_to_device(rotation.messages, chat_id=chat["chatId"], deadline=300)
        seconds = time.perf_counter() - started
    finally:
        await client.close()
    stats = stack.stats()
    units = stats.get("write_units", {})
    calls = stats.get("calls", {})
    return {
        "section": "encryption rotation over the stack",
        "to_device_messages": count,
        "seconds": round(seconds, 2),
        "transact_write_items": calls.get("dynamodb.TransactWriteItems", 0),
        "write_units_transact": units.get("dynamodb.TransactWriteItems", 0.0),
        "write_units_computed": rotation.row()["write_units"],
        "write_units_all": round(sum(units.values()), 1),
        "aws_calls": dict(sorted(calls.items())),
    }
