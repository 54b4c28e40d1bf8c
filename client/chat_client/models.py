"""The frames an application sees, as typed values, and the SDK's exceptions.

Each frame's value is a frozen dataclass read by one reader, ``FrameValue.from_frame``: a field
comes from the frame key of the same name in camelCase (``FRAME_KEYS`` names the exceptions), read
as its type says (``_READERS``; ``OptionalStr`` and ``OptionalBytes`` may be missing).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Self, TypeVar, get_origin, get_type_hints

logger = logging.getLogger("chat_client")

T = TypeVar("T")
# Reads one key of a frame; raises ValueError when it is missing or mistyped.
FieldReader = Callable[[dict[str, Any], str], Any]


def _required_str(frame: dict[str, Any], key: str) -> str:
    value = frame.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


def _optional_str(frame: dict[str, Any], key: str) -> str:
    return str(frame.get(key) or "")


def _positive_int(frame: dict[str, Any], key: str) -> int:
    value = frame.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer")
    return value


def _str_list(frame: dict[str, Any], key: str) -> list[str]:
    values = frame.get(key) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{key} must be a list of strings")
    return list(values)


def _base64(frame: dict[str, Any], key: str) -> bytes:
    value = frame.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{key} is not valid base64: {exc}") from exc


def _optional_base64(frame: dict[str, Any], key: str) -> bytes:
    return _base64(frame, key) if key in frame else b""


# How a field of each type is read (every seq, the only int of a frame, is positive).
_READERS: dict[Any, FieldReader] = {
    str: _required_str,
    int: _positive_int,
    bytes: _base64,
    list[str]: _str_list,
}
OptionalStr = Annotated[str, _optional_str]  # "" when the key is missing
OptionalBytes = Annotated[bytes, _optional_base64]  # b"" when the key is missing
# Fields whose frame key is not their name in camelCase.
FRAME_KEYS = {"sender": "from", "sender_device": "fromDevice"}


class FrameValue:
    """Base of the frame dataclasses: ``from_frame`` reads every field from its frame key."""

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Self:
        """Raises ValueError on a frame that is missing or mistypes a required field."""
        return cls(**{name: read(frame, key) for name, key, read in _field_readers(cls)})


_readers_of: dict[type, list[tuple[str, str, FieldReader]]] = {}


def _field_readers(cls: type) -> list[tuple[str, str, FieldReader]]:
    """(field, frame key, reader) of each field of the frame dataclass ``cls``, worked out once."""
    if cls not in _readers_of:
        hints = get_type_hints(cls, include_extras=True)
        readers = []
        for f in fields(cls):
            hint = hints[f.name]
            read = hint.__metadata__[0] if get_origin(hint) is Annotated else _READERS[hint]
            key = FRAME_KEYS.get(f.name) or re.sub(r"_([a-z])", lambda m: m.group(1).upper(), f.name)
            readers.append((f.name, key, read))
        _readers_of[cls] = readers
    return _readers_of[cls]


def parse_frame(read: Callable[[dict[str, Any]], T], frame: dict[str, Any]) -> T | None:
    """``read(frame)`` (a ``from_frame``), or None, logged, for a malformed frame: one bad frame
    from the server is dropped, not a reason to drop the connection."""
    try:
        return read(frame)
    except ValueError as exc:
        logger.warning("malformed %s frame (%s): %.200s", frame.get("type"), exc, frame)
        return None


@dataclass(frozen=True)
class Message(FrameValue):
    """A MESSAGE frame, released in seq order. ``ciphertext`` is the base64-decoded payload."""

    chat_id: str
    seq: int
    server_msg_id: str
    sender: str
    sender_device: OptionalStr  # system messages (membership changes) may carry no device
    ciphertext: OptionalBytes
    media_ids: list[str] = field(default_factory=list)
    created_at: OptionalStr = ""

    @property
    def text(self) -> str:
        """The payload read as UTF-8 (what the demo CLI sends; real apps decrypt instead)."""
        return self.ciphertext.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Void(FrameValue):
    """A VOID frame (protocol v1.1): the seq carries no message. It takes its place in the order and
    is never shown to the application."""

    chat_id: str
    seq: int


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
class ToDevice(FrameValue):
    """A TO_DEVICE frame: key material for this device from another (or the same user's) device.
    The server keeps it until it is acknowledged (`ChatClient.ack_to_device`)."""

    id: str
    sender: str
    sender_device: str
    ciphertext: bytes
    created_at: OptionalStr


@dataclass(frozen=True)
class Ack(FrameValue):
    """The server's ACK of a send: the message is durably stored with this seq."""

    client_msg_id: str
    chat_id: str
    server_msg_id: str
    seq: int
    created_at: OptionalStr


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
