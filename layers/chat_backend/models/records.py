"""What the tables hold: messages, VOIDs, chat metadata, media, send records."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel, ConfigDict

from chat_backend.models.common import Fanout
from chat_backend.models.server_frames import MessageFrame, VoidFrame


class StoredMessage(BaseModel):
    """A message as the store holds it: the source of truth for ACK, sync and push."""

    model_config = ConfigDict(frozen=True)
    chat_id: str
    seq: int
    server_msg_id: str
    sender: str
    sender_device: str | None
    ciphertext: bytes
    media_ids: list[str]
    created_at: str
    # The chat's membership version when the message was stored: who its audience is. Not sent.
    members_version: int | None = None
    # Who pushes it: the send function itself ("direct", small chats) or the stream's fan-out
    # function through the delivery queue ("queued": large groups, system messages).
    fanout: Fanout = "queued"
    # Members who blocked the sender of this direct-chat message: to them its seq is a VOID.
    hidden_from: frozenset[str] = frozenset()

    def frame_for(self, reader: str) -> MessageFrame | VoidFrame:
        """What `reader` gets at this seq: the message, or a VOID when it is hidden from them."""
        if reader in self.hidden_from:
            return VoidFrame(chat_id=self.chat_id, seq=self.seq)
        return self.to_frame()

    def to_frame(self) -> MessageFrame:
        return MessageFrame(
            chat_id=self.chat_id,
            server_msg_id=self.server_msg_id,
            seq=self.seq,
            sender=self.sender,
            sender_device=self.sender_device,
            ciphertext=base64.b64encode(self.ciphertext).decode(),
            media_ids=self.media_ids,
            created_at=self.created_at,
        )


class StoredVoid(BaseModel):
    """A seq filled with nothing: reserved by a writer that died or stalled (see logic/holes.py)."""

    model_config = ConfigDict(frozen=True)
    chat_id: str
    seq: int
    created_at: str
    members_version: int | None = None  # the chat's when the hole was filled: who is told

    def to_frame(self) -> VoidFrame:
        return VoidFrame(chat_id=self.chat_id, seq=self.seq)

    def frame_for(self, reader: str) -> VoidFrame:
        return self.to_frame()


Stored = StoredMessage | StoredVoid  # what a seq of a chat holds


class PendingChange(BaseModel):
    """A membership change that has reserved its seq but not yet committed (META's changeToken).
    Sends wait for it; one found older than the hole grace is abandoned (logic/holes.py)."""

    model_config = ConfigDict(frozen=True)
    token: str
    seq: int
    at_ms: int


class ChatMeta(BaseModel):
    model_config = ConfigDict(frozen=True)
    chat_id: str
    kind: Literal["direct", "group"]
    name: str | None
    head_seq: int
    member_count: int
    created_at: str
    # Bumped with every membership change (each of which also advances head_seq).
    members_version: int = 0
    # When head_seq last moved (epoch ms): how old a hole at the head is.
    head_at_ms: int | None = None
    change: PendingChange | None = None
    # A direct chat's two members (they never change), so a send needs no member query.
    pair: tuple[str, str] | None = None
    # A direct chat's members who block the other (their messages are hidden from the blocker),
    # and those who chose the chat (created it or sent in it): whose presence it opens.
    blocked_by: frozenset[str] = frozenset()
    engaged: frozenset[str] = frozenset()
    # Seqs up to this one are in the archive bucket, not the messages table (logic/archive.py).
    archived_through: int = 0


class StoredMedia(BaseModel):
    """A MEDIA#<mediaId> item of a chat: announced by an upload, attached by a send."""

    model_config = ConfigDict(frozen=True)
    chat_id: str
    media_id: str
    uploader: str
    content_type: str
    size: int
    created_at: str
    attached: bool = False
    attached_seqs: frozenset[int] = frozenset()  # the messages it is attached to
    expires_at: int | None = None  # epoch s at which an unattached upload is forgotten (TTL)

    @property
    def key(self) -> str:
        return media_key(self.chat_id, self.media_id)


def media_key(chat_id: str, media_id: str) -> str:
    """The object key of a media blob: under its chat, so a key names the chat it belongs to."""
    return f"{chat_id}/{media_id}"


class SendRecord(BaseModel):
    """What an accepted send was answered with; kept to answer retries identically."""

    model_config = ConfigDict(frozen=True)
    server_msg_id: str
    seq: int
    created_at: str
