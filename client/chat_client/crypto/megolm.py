"""Megolm: one outbound group session per chat for this device's messages, and the inbound
sessions of other devices' messages (vodozemac). Every message of a chat is one Megolm ciphertext,
whatever the group's size; the session key goes to each member device over Olm (a `room_key`
to-device payload) before the first message that uses it.

What a receiver checks: the room key came over Olm from the device the message names
(`from` / `fromDevice`), for this very chat; a (session, index) decrypts once (a replay is
refused); a message whose key has not arrived yet is PendingKey, not a failure.

Rotation (docs/E2E.md, done lazily before the sender's next message): when a member or device
left, after ROTATE_AFTER_MESSAGES messages (ROTATE_AFTER_MESSAGES_LARGE in groups of more than
LARGE_GROUP devices), or after ROTATE_AFTER_S. Not on a join: a new member gets the current key
at its current index and cannot read what came before.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import vodozemac

ROTATE_AFTER_MESSAGES = 100
ROTATE_AFTER_MESSAGES_LARGE = 1000
LARGE_GROUP = 1000  # devices
ROTATE_AFTER_S = 7 * 24 * 3600


class PendingKey(Exception):
    """The session's key has not arrived (yet): keep the message and try again when it does."""


class DecryptionFailed(Exception):
    """The message cannot be trusted or read: a replay, a key from another device, another chat."""


@dataclass
class Outbound:
    """This device's current session in one chat, and who has its key."""

    session: vodozemac.GroupSession
    created_at: float
    shared_with: set[str] = field(default_factory=set)  # PeerDevice.holder of those with the key
    messages: int = 0

    @property
    def session_id(self) -> str:
        return str(self.session.session_id)

    def due(self, devices: int, now: float) -> bool:
        limit = ROTATE_AFTER_MESSAGES_LARGE if devices > LARGE_GROUP else ROTATE_AFTER_MESSAGES
        return self.messages >= limit or now - self.created_at >= ROTATE_AFTER_S


@dataclass(frozen=True)
class Opened:
    """A decrypted message: its content, its index in the session, and whose session it was."""

    content: dict[str, Any]
    index: int
    key: InboundKey


@dataclass(frozen=True)
class InboundKey:
    """Whose a session is: the device whose Olm session brought the key, and the chat."""

    chat_id: str
    sender: str
    sender_device: str
    sender_key: str  # that device's curve25519 identity key


class GroupSessions:
    def __init__(self, state: dict[str, Any], pickle_key: bytes) -> None:
        self.pickle_key = pickle_key
        self.outbound: dict[str, Outbound] = {
            chat_id: Outbound(
                vodozemac.GroupSession.from_pickle(o["pickle"], pickle_key),
                float(o["createdAt"]),
                set(o["sharedWith"]),
                int(o["messages"]),
            )
            for chat_id, o in state.get("outbound", {}).items()
        }
        self.inbound: dict[str, tuple[vodozemac.InboundGroupSession, InboundKey]] = {
            session_id: (
                vodozemac.InboundGroupSession.from_pickle(i["pickle"], pickle_key),
                InboundKey(**i["key"]),
            )
            for session_id, i in state.get("inbound", {}).items()
        }
        self.seen: dict[str, set[int]] = {s: set(v) for s, v in state.get("seen", {}).items()}
        # An inbound session does not change as it decrypts: pickled once, when it came.
        self._inbound_pickles: dict[str, str] = {
            session_id: i["pickle"] for session_id, i in state.get("inbound", {}).items()
        }

    def state(self) -> dict[str, Any]:
        key = self.pickle_key
        return {
            "outbound": {
                chat_id: {
                    "pickle": o.session.pickle(key),
                    "createdAt": o.created_at,
                    "sharedWith": sorted(o.shared_with),
                    "messages": o.messages,
                }
                for chat_id, o in self.outbound.items()
            },
            "inbound": {
                session_id: {"pickle": self._inbound_pickles[session_id], "key": vars(k)}
                for session_id, (_, k) in self.inbound.items()
            },
            "seen": {s: sorted(v) for s, v in self.seen.items()},
        }

    # --- sending ----------------------------------------------------------------------------------

    def outbound_for(self, chat_id: str, devices: int, left: bool, now: float | None = None) -> Outbound:
        """The session to send the chat's next message with: a new one when none is current, a
        member or device `left` since the last, or the current one is due for rotation."""
        now = time.time() if now is None else now
        current = self.outbound.get(chat_id)
        if current is None or left or current.due(devices, now):
            current = Outbound(vodozemac.GroupSession(), now)
            self.outbound[chat_id] = current
        return current

    def room_key(self, chat_id: str, outbound: Outbound) -> bytes:
        """The Olm plaintext that hands the session's key (at its current index) to a device."""
        payload = {
            "type": "room_key",
            "chatId": chat_id,
            "sessionId": outbound.session_id,
            "sessionKey": outbound.session.session_key.to_base64(),
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    def encrypt(self, chat_id: str, outbound: Outbound, content: dict[str, Any]) -> bytes:
        """The ciphertext bytes of a send: the session id and the Megolm ciphertext of the
        content, which names its chat (so it cannot be replayed into another)."""
        plaintext = json.dumps({"chatId": chat_id, "content": content}, separators=(",", ":")).encode()
        message = outbound.session.encrypt(plaintext)
        outbound.messages += 1
        envelope = {"v": 1, "alg": "megolm", "sessionId": outbound.session_id, "body": message.to_base64()}
        return json.dumps(envelope, separators=(",", ":")).encode()

    # --- receiving --------------------------------------------------------------------------------

    def add_room_key(self, payload: dict[str, Any], sender: str, sender_device: str, sender_key: str) -> bool:
        """Keep a session key that came over Olm from (sender, sender_device, sender_key). A key
        for a session already held from another device is refused (False): nobody can take over
        another device's session."""
        session_id = str(payload["sessionId"])
        key = InboundKey(str(payload["chatId"]), sender, sender_device, sender_key)
        held = self.inbound.get(session_id)
        if held is not None:
            return held[1] == key  # the same key again: nothing to do
        session = vodozemac.InboundGroupSession(vodozemac.SessionKey(str(payload["sessionKey"])))
        if session.session_id != session_id:
            return False
        self.inbound[session_id] = (session, key)
        self._inbound_pickles[session_id] = session.pickle(self.pickle_key)
        return True

    def decrypt(self, chat_id: str, sender: str, sender_device: str, ciphertext: bytes) -> Opened:
        """A MESSAGE (`from` sender, `fromDevice` sender_device) opened."""
        try:
            envelope = json.loads(ciphertext)
            session_id, body = str(envelope["sessionId"]), str(envelope["body"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DecryptionFailed("not an encrypted message") from exc
        held = self.inbound.get(session_id)
        if held is None:
            raise PendingKey(session_id)
        session, key = held
        if (key.chat_id, key.sender, key.sender_device) != (chat_id, sender, sender_device):
            raise DecryptionFailed("the session belongs to another device or chat")
        try:
            decrypted = session.decrypt(vodozemac.MegolmMessage.from_base64(body))
        except (vodozemac.MegolmDecryptionException, vodozemac.DecodeException) as exc:
            raise DecryptionFailed(f"does not decrypt: {exc}") from exc
        index = int(decrypted.message_index)
        seen = self.seen.setdefault(session_id, set())
        if index in seen:
            raise DecryptionFailed("a replay of a message already decrypted")
        inner = json.loads(bytes(decrypted.plaintext))
        if inner.get("chatId") != chat_id:
            raise DecryptionFailed("the message was encrypted for another chat")
        seen.add(index)
        return Opened(dict(inner["content"]), index, key)
