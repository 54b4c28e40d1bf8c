"""The frames an application sees, as typed values, and the SDK's exceptions."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """A MESSAGE frame, released in seq order. ``ciphertext`` is the base64-decoded payload."""

    chat_id: str
    seq: int
    server_msg_id: str
    sender: str
    sender_device: str
    ciphertext: bytes
    media_ids: list[str] = field(default_factory=list)
    created_at: str = ""

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Message:
        """Raises ValueError on a frame that is missing or mistypes a required field."""
        chat_id = _req_str(frame, "chatId")
        seq = _req_seq(frame)
        media = frame.get("mediaIds") or []
        if not isinstance(media, list) or not all(isinstance(m, str) for m in media):
            raise ValueError("mediaIds must be a list of strings")
        return cls(
            chat_id=chat_id,
            seq=seq,
            server_msg_id=_req_str(frame, "serverMsgId"),
            sender=_req_str(frame, "from"),
            # System messages (membership changes) may carry no device.
            sender_device=str(frame.get("fromDevice") or ""),
            ciphertext=_b64decode(frame.get("ciphertext", "")),
            media_ids=list(media),
            created_at=str(frame.get("createdAt") or ""),
        )

    @property
    def text(self) -> str:
        """The payload read as UTF-8 (what the demo CLI sends; real apps decrypt instead)."""
        return self.ciphertext.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Void:
    """A VOID frame (protocol v1.1): the seq carries no message. It takes its place in the order and
    is never shown to the application."""

    chat_id: str
    seq: int

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Void:
        return cls(chat_id=_req_str(frame, "chatId"), seq=_req_seq(frame))


SYSTEM_SENDER = "system"  # `from` of membership announcements


def removed_members(message: Message) -> list[str]:
    """Whom a membership announcement removed (nobody for any other message)."""
    return _changed_members(message, "removed")


def added_members(message: Message) -> list[str]:
    """Whom a membership announcement added (nobody for any other message)."""
    return _changed_members(message, "added")


def _changed_members(message: Message, event: str) -> list[str]:
    if message.sender != SYSTEM_SENDER:
        return []
    try:
        body = json.loads(message.ciphertext)
    except ValueError:
        return []
    if not isinstance(body, dict) or body.get("event") != event:
        return []
    members = body.get("members")
    return [m for m in members if isinstance(m, str)] if isinstance(members, list) else []


@dataclass(frozen=True)
class ToDevice:
    """A TO_DEVICE frame: key material for this device from another (or the same user's) device.
    The server keeps it until it is acknowledged (`ChatClient.ack_to_device`)."""

    id: str
    sender: str
    sender_device: str
    ciphertext: bytes
    created_at: str

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> ToDevice:
        return cls(
            id=_req_str(frame, "id"),
            sender=_req_str(frame, "from"),
            sender_device=_req_str(frame, "fromDevice"),
            ciphertext=_b64decode(frame.get("ciphertext")),
            created_at=str(frame.get("createdAt", "")),
        )


@dataclass(frozen=True)
class Ack:
    """The server's ACK of a send: the message is durably stored with this seq."""

    client_msg_id: str
    chat_id: str
    server_msg_id: str
    seq: int
    created_at: str

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Ack:
        return cls(
            client_msg_id=_req_str(frame, "clientMsgId"),
            chat_id=_req_str(frame, "chatId"),
            server_msg_id=_req_str(frame, "serverMsgId"),
            seq=_req_seq(frame),
            created_at=str(frame.get("createdAt") or ""),
        )


class ChatServerError(Exception):
    """The server answered with an ERROR frame."""

    def __init__(self, code: str, message: str, frame: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.frame: dict[str, Any] = frame if frame is not None else {}

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> ChatServerError:
        return cls(str(frame.get("code") or "UNKNOWN"), str(frame.get("message") or ""), frame)

    @property
    def retry_after_s(self) -> float | None:
        """For RATE_LIMITED, how long the server asks to wait before the same frame again."""
        wait = self.frame.get("retryAfterMs")
        if self.code != "RATE_LIMITED" or not isinstance(wait, int) or isinstance(wait, bool) or wait <= 0:
            return None
        return wait / 1000


class ChatAuthError(Exception):
    """The WebSocket handshake was refused (HTTP 401/403). Retrying with the same token cannot help."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(f"handshake refused with HTTP {status}" + (f": {message}" if message else ""))
        self.status = status


class ChatConnectionError(ConnectionError):
    """The connection went away before a request was answered (the reply cannot arrive any more)."""


class ChatClosedError(ChatConnectionError):
    """The client is closed (or was never connected)."""


def _req_str(frame: dict[str, Any], key: str) -> str:
    value = frame.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


def _req_seq(frame: dict[str, Any]) -> int:
    seq = frame.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValueError("seq must be a positive integer")
    return seq


def _b64decode(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("ciphertext must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"ciphertext is not valid base64: {exc}") from exc
