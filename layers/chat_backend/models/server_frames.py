"""Server frames (PROTOCOL.md): everything the backend writes to a connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from chat_backend.models.common import ReceiptType


class ServerFrame(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)
    # Fields left out of the JSON while unset (None, False or empty): the optional v1.1 additions, so a
    # frame without them reads exactly as in v1.
    omitted_when_unset: ClassVar[frozenset[str]] = frozenset()

    def to_json(self) -> str:
        unset = {name for name in self.omitted_when_unset if getattr(self, name) in (None, False, {})}
        return self.model_dump_json(by_alias=True, exclude=unset)


def fitting(empty: ServerFrame, entries: Sequence[ServerFrame], budget: int) -> int:
    """How many of `entries`, in order, fit in the frame `empty` (sent with its list empty, and
    its cursor as long as the answer's) within `budget` bytes of JSON."""
    size = len(empty.to_json().encode())
    for count, entry in enumerate(entries):
        size += len(entry.to_json().encode()) + 1  # and a comma
        if size > budget:
            return count
    return len(entries)


class Answer(ServerFrame):
    """A frame answering a request: its `type` (each answer's own), then the request's id."""

    type: str
    request_id: str = Field(alias="requestId")


class AckFrame(ServerFrame):
    type: Literal["ACK"] = "ACK"
    client_msg_id: str = Field(alias="clientMsgId")
    chat_id: str = Field(alias="chatId")
    server_msg_id: str = Field(alias="serverMsgId")
    seq: int
    created_at: str = Field(alias="createdAt")


class MessageFrame(ServerFrame):
    type: Literal["MESSAGE"] = "MESSAGE"
    chat_id: str = Field(alias="chatId")
    server_msg_id: str = Field(alias="serverMsgId")
    seq: int
    sender: str = Field(alias="from")
    sender_device: str | None = Field(alias="fromDevice")
    ciphertext: str
    media_ids: list[str] = Field(alias="mediaIds")
    created_at: str = Field(alias="createdAt")


class ToDeviceFrame(ServerFrame):
    """A to-device message for this device, pushed live and replayed by sync until acknowledged."""

    type: Literal["TO_DEVICE"] = "TO_DEVICE"
    id: str
    sender: str = Field(alias="from")
    sender_device: str = Field(alias="fromDevice")
    ciphertext: str
    created_at: str = Field(alias="createdAt")


class ToDeviceAckFrame(Answer):
    type: Literal["TO_DEVICE_ACK"] = "TO_DEVICE_ACK"
    txn_id: str = Field(alias="txnId")
    count: int  # the messages of the transaction, stored


class VoidFrame(ServerFrame):
    """A seq that carries no message (PROTOCOL.md v1.1): its writer died or stalled before storing
    it. Delivered live and in sync like a message, so a client sees every seq exactly once."""

    type: Literal["VOID"] = "VOID"
    chat_id: str = Field(alias="chatId")
    seq: int


class SyncDoneFrame(Answer):
    type: Literal["SYNC_DONE"] = "SYNC_DONE"
    heads: dict[str, int]
    more: bool
    # v1.1: heads lists only the chats named in cursors (the user has more than MAX_SYNC_HEADS)
    heads_truncated: bool = Field(False, alias="headsTruncated")
    # v1.1: where the user's history window starts, for the chats where that is after seq 1
    starts: dict[str, int] = Field(default_factory=dict)

    omitted_when_unset = frozenset({"heads_truncated", "starts"})


class ChatEntry(ServerFrame):
    chat_id: str = Field(alias="chatId")
    kind: Literal["direct", "group"]
    name: str | None
    head: int
    role: Literal["admin", "member"]


class ChatsFrame(Answer):
    """`listChats`'s page (v1.1): at most 500 chats, and never over the frame limit."""

    type: Literal["CHATS"] = "CHATS"
    chats: list[ChatEntry]
    next: str | None


class ChatFrame(Answer):
    type: Literal["CHAT"] = "CHAT"
    chat_id: str = Field(alias="chatId")
    kind: Literal["direct", "group"]
    name: str | None
    created_at: str = Field(alias="createdAt")
    member_count: int = Field(alias="memberCount")
    role: Literal["admin", "member"]
    # v1.1: the users left out for privacy or a block, told to the requester only, no reason given.
    not_added: list[str] | None = Field(None, alias="notAdded")
    # Users still to be added by a member job (announced as they get in): a create or an add that
    # could not finish within one invocation.
    pending_members: int | None = Field(None, alias="pendingMembers")

    omitted_when_unset = frozenset({"not_added", "pending_members"})


class OkFrame(Answer):
    """The answer to a request that returns nothing else (block, unblock, setPrivacy)."""

    type: Literal["OK"] = "OK"


class TypingNoticeFrame(ServerFrame):
    type: Literal["TYPING"] = "TYPING"
    chat_id: str = Field(alias="chatId")
    user_id: str = Field(alias="userId")


class MemberEntry(ServerFrame):
    user_id: str = Field(alias="userId")
    role: Literal["admin", "member"]


class MembersFrame(Answer):
    type: Literal["MEMBERS"] = "MEMBERS"
    chat_id: str = Field(alias="chatId")
    members: list[MemberEntry]
    next: str | None


class ReceiptNoticeFrame(ServerFrame):
    """RECEIPT: per message (serverMsgId + seq) or as a watermark (upToSeq); the other form's
    fields are left out of the JSON."""

    type: Literal["RECEIPT"] = "RECEIPT"
    chat_id: str = Field(alias="chatId")
    user_id: str = Field(alias="userId")
    receipt_type: ReceiptType = Field(alias="receiptType")
    server_msg_id: str | None = Field(None, alias="serverMsgId")
    seq: int | None = None
    up_to_seq: int | None = Field(None, alias="upToSeq")
    at: str

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class ReceiptSummaryFrame(ServerFrame):
    type: Literal["RECEIPT_SUMMARY"] = "RECEIPT_SUMMARY"
    chat_id: str = Field(alias="chatId")
    server_msg_id: str = Field(alias="serverMsgId")
    delivered: int
    read: int


class ReceiptEntry(ServerFrame):
    user_id: str = Field(alias="userId")
    receipt_type: ReceiptType = Field(alias="receiptType")
    at: str


class ReceiptsFrame(Answer):
    type: Literal["RECEIPTS"] = "RECEIPTS"
    receipts: list[ReceiptEntry]
    next: str | None


class PresenceNoticeFrame(ServerFrame):
    type: Literal["PRESENCE"] = "PRESENCE"
    user_id: str = Field(alias="userId")
    status: Literal["ONLINE", "OFFLINE"]
    last_seen: str | None = Field(alias="lastSeen")
    request_id: str | None = Field(None, alias="requestId")  # v1.1: on answers to a presence frame

    omitted_when_unset = frozenset({"request_id"})


class SignedPreKeyEntry(ServerFrame):
    key_id: int = Field(alias="keyId")
    public_key: str = Field(alias="publicKey")
    signature: str


class OneTimePreKeyEntry(ServerFrame):
    key_id: int = Field(alias="keyId")
    public_key: str = Field(alias="publicKey")


class DeviceKeys(ServerFrame):
    device_id: str = Field(alias="deviceId")
    identity_key: str = Field(alias="identityKey")
    signed_pre_key: SignedPreKeyEntry = Field(alias="signedPreKey")
    one_time_pre_key: OneTimePreKeyEntry | None = Field(alias="oneTimePreKey")
    # Left out when the device published none (a v1 KEYS entry reads as before).
    signing_key: str | None = Field(None, alias="signingKey", exclude_if=lambda v: v is None)


class ChatDevice(ServerFrame):
    """A device's identity, as getChatDevices lists it (`signingKey` left out when it has none)."""

    user_id: str = Field(alias="userId")
    device_id: str = Field(alias="deviceId")
    identity_key: str = Field(alias="identityKey")
    signing_key: str | None = Field(None, alias="signingKey", exclude_if=lambda v: v is None)


class UserDevice(ChatDevice):
    """A device's public keys, as queryDevices lists them (nothing claimed; `signingKey` null when
    it has none)."""

    signing_key: str | None = Field(alias="signingKey")
    signed_pre_key: SignedPreKeyEntry = Field(alias="signedPreKey")


class ChatDevicesFrame(Answer):
    type: Literal["CHAT_DEVICES"] = "CHAT_DEVICES"
    chat_id: str = Field(alias="chatId")
    devices: list[ChatDevice]
    next: str | None


class DevicesChangedFrame(ServerFrame):
    """Pushed when a user's publishKeys adds a device or changes a device's identity key."""

    type: Literal["DEVICES_CHANGED"] = "DEVICES_CHANGED"
    user_id: str = Field(alias="userId")
    device_id: str = Field(alias="deviceId")
    change: Literal["added", "keysChanged"]


class DevicesFrame(Answer):
    type: Literal["DEVICES"] = "DEVICES"
    devices: list[UserDevice]


class ClaimedKey(ServerFrame):
    user_id: str = Field(alias="userId")
    device_id: str = Field(alias="deviceId")
    one_time_pre_key: OneTimePreKeyEntry | None = Field(alias="oneTimePreKey")


class ClaimedFrame(Answer):
    type: Literal["CLAIMED"] = "CLAIMED"
    keys: list[ClaimedKey]


class KeysPublishedFrame(ServerFrame):
    type: Literal["KEYS_PUBLISHED"] = "KEYS_PUBLISHED"
    one_time_pre_keys: int = Field(alias="oneTimePreKeys")  # unused ones the device now has


class KeysFrame(Answer):
    type: Literal["KEYS"] = "KEYS"
    user_id: str = Field(alias="userId")
    devices: list[DeviceKeys]


class PongFrame(ServerFrame):
    """`heads` (v1.1): the chats whose head moved since the connection's previous heartbeat, so a
    connected client notices a push it missed. Left out when there are none."""

    type: Literal["PONG"] = "PONG"
    heads: dict[str, int] | None = None
    omitted_when_unset = frozenset({"heads"})


class MediaUploadAnswer(Answer):
    """Where to POST the (encrypted) bytes: `url` with `fields` as the form, the file last."""

    type: Literal["MEDIA_UPLOAD"] = "MEDIA_UPLOAD"
    media_id: str = Field(alias="mediaId")
    url: str
    fields: dict[str, str]
    expires_at: str = Field(alias="expiresAt")


class MediaUrlFrame(Answer):
    type: Literal["MEDIA_URL"] = "MEDIA_URL"
    media_id: str = Field(alias="mediaId")
    url: str
    expires_at: str = Field(alias="expiresAt")


class ErrorFrame(ServerFrame):
    type: Literal["ERROR"] = "ERROR"
    code: str
    message: str
    request_id: str | None = Field(None, alias="requestId")
    client_msg_id: str | None = Field(None, alias="clientMsgId")
    retry_after_ms: int | None = Field(None, alias="retryAfterMs")  # RATE_LIMITED only

    omitted_when_unset = frozenset({"retry_after_ms"})
