"""Client frames (PROTOCOL.md): what a connection may send. frame_parsing.py turns a frame's text
into one of these; frame_fields.py holds the field types they are made of.

Client frames are strict: a wrong type is an error, not a coercion ("5" is not a seq).
Unknown fields are ignored, as the protocol says.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from chat_backend.models.common import (
    DEFAULT_SYNC_LIMIT,
    MAX_GROUP_MEMBERS,
    MAX_MEDIA_IDS,
    MAX_SYNC_LIMIT,
    Id,
    ReceiptType,
    RequestId,
    Seq,
    UserId,
)
from chat_backend.models.frame_fields import (
    ChatDevicesCursor,
    Ciphertext,
    ContentType,
    KeyBytes,
    KeyId,
    ToDeviceCiphertext,
)


class ClientFrame(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class SendFrame(ClientFrame):
    action: Literal["send"]
    client_msg_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        alias="clientMsgId"
    )
    chat_id: Id = Field(alias="chatId")
    ciphertext: Ciphertext
    media_ids: list[Id] = Field(default_factory=list, alias="mediaIds", max_length=MAX_MEDIA_IDS)

    @property
    def ciphertext_bytes(self) -> bytes:
        return base64.b64decode(self.ciphertext)


class SyncFrame(ClientFrame):
    action: Literal["sync"]
    request_id: RequestId = Field(alias="requestId")
    cursors: dict[Id, Seq] = Field(default_factory=dict)
    limit: Annotated[int, Field(ge=1, le=MAX_SYNC_LIMIT)] = DEFAULT_SYNC_LIMIT
    # v1.1: replay (and list in heads) only the chats named in cursors
    only: bool = False


class CreateChatFrame(ClientFrame):
    action: Literal["createChat"]
    request_id: RequestId = Field(alias="requestId")
    kind: Literal["direct", "group"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    members: list[UserId] = Field(min_length=1, max_length=MAX_GROUP_MEMBERS)

    @model_validator(mode="after")
    def _check_members(self) -> CreateChatFrame:
        _unique(self.members)
        if self.kind == "direct" and len(self.members) != 1:
            raise ValueError("a direct chat has exactly one other member")
        return self


def _unique(members: list[str]) -> list[str]:
    if len(set(members)) != len(members):
        raise ValueError("members has duplicates")
    return members


Members = Annotated[list[UserId], Field(min_length=1, max_length=MAX_GROUP_MEMBERS), AfterValidator(_unique)]


class AddMembersFrame(ClientFrame):
    action: Literal["addMembers"]
    request_id: RequestId = Field(alias="requestId")
    chat_id: Id = Field(alias="chatId")
    members: Members


class RemoveMembersFrame(ClientFrame):
    action: Literal["removeMembers"]
    request_id: RequestId = Field(alias="requestId")
    chat_id: Id = Field(alias="chatId")
    members: Members


class GetMembersFrame(ClientFrame):
    action: Literal["getMembers"]
    request_id: RequestId = Field(alias="requestId")
    chat_id: Id = Field(alias="chatId")
    cursor: Id | None = None  # the last userId of the previous page


class ReceiptFrame(ClientFrame):
    """Per message (serverMsgId) or as a watermark (upToSeq): exactly one of the two."""

    action: Literal["receipt"]
    chat_id: Id = Field(alias="chatId")
    type: ReceiptType
    server_msg_id: Id | None = Field(None, alias="serverMsgId")
    up_to_seq: Annotated[Seq, Field(ge=1)] | None = Field(None, alias="upToSeq")

    @model_validator(mode="after")
    def _one_form(self) -> ReceiptFrame:
        if (self.server_msg_id is None) == (self.up_to_seq is None):
            raise ValueError("give exactly one of serverMsgId and upToSeq")
        return self


class ReceiptsQueryFrame(ClientFrame):
    action: Literal["receipts"]
    request_id: RequestId = Field(alias="requestId")
    chat_id: Id = Field(alias="chatId")
    server_msg_id: Id = Field(alias="serverMsgId")
    cursor: Id | None = None  # the last userId of the previous page


MAX_PRESENCE_USERS = 100


class PresenceFrame(ClientFrame):
    action: Literal["presence"]
    request_id: RequestId | None = Field(None, alias="requestId")  # v1.1: echoed on the answers
    subscribe: list[UserId] = Field(default_factory=list, max_length=MAX_PRESENCE_USERS)
    unsubscribe: list[UserId] = Field(default_factory=list, max_length=MAX_PRESENCE_USERS)


class HeartbeatFrame(ClientFrame):
    action: Literal["heartbeat"]


class TypingFrame(ClientFrame):
    action: Literal["typing"]
    chat_id: Id = Field(alias="chatId")


class OneTimePreKey(ClientFrame):
    key_id: KeyId = Field(alias="keyId")
    public_key: KeyBytes = Field(alias="publicKey")


class SignedPreKey(OneTimePreKey):
    """A prekey, and its signature by the device's signing key."""

    signature: KeyBytes


MAX_ONE_TIME_PREKEYS = 100  # per publishKeys frame


class PublishKeysFrame(ClientFrame):
    """The calling device's keys: identity key and signed prekey replace the previous ones; one-time
    prekeys are added (the same keyId again replaces that key)."""

    action: Literal["publishKeys"]
    identity_key: KeyBytes = Field(alias="identityKey")
    # The device's ed25519 key, which signs its signed prekey (and its Megolm sessions' messages).
    signing_key: KeyBytes | None = Field(None, alias="signingKey")
    signed_pre_key: SignedPreKey = Field(alias="signedPreKey")
    one_time_pre_keys: list[OneTimePreKey] = Field(
        default_factory=list, alias="oneTimePreKeys", max_length=MAX_ONE_TIME_PREKEYS
    )

    @model_validator(mode="after")
    def _unique_key_ids(self) -> PublishKeysFrame:
        ids = [k.key_id for k in self.one_time_pre_keys]
        if len(set(ids)) != len(ids):
            raise ValueError("oneTimePreKeys has duplicate keyIds")
        return self


MAX_DEVICES_PER_FRAME = 100


class QueryDevicesFrame(ClientFrame):
    """The devices (public keys, nothing claimed) of up to 100 users."""

    action: Literal["queryDevices"]
    request_id: RequestId = Field(alias="requestId")
    user_ids: list[UserId] = Field(alias="userIds", min_length=1, max_length=MAX_DEVICES_PER_FRAME)


class DeviceRef(ClientFrame):
    user_id: UserId = Field(alias="userId")
    device_id: Id = Field(alias="deviceId")


class ClaimKeysFrame(ClientFrame):
    """One one-time prekey of each of up to 100 devices (the rules of fetchKeys)."""

    action: Literal["claimKeys"]
    request_id: RequestId = Field(alias="requestId")
    devices: list[DeviceRef] = Field(min_length=1, max_length=MAX_DEVICES_PER_FRAME)


class GetChatDevicesFrame(ClientFrame):
    """Every device (public keys) of every current member of a chat, a page at a time."""

    action: Literal["getChatDevices"]
    request_id: RequestId = Field(alias="requestId")
    chat_id: Id = Field(alias="chatId")
    cursor: ChatDevicesCursor | None = None


class FetchKeysFrame(ClientFrame):
    action: Literal["fetchKeys"]
    request_id: RequestId = Field(alias="requestId")
    user_id: UserId = Field(alias="userId")


class MediaUploadFrame(ClientFrame):
    """`size` above MAX_MEDIA_BYTES is TOO_LARGE (checked by the use case); below 1 a BAD_REQUEST."""

    action: Literal["mediaUpload"]
    request_id: RequestId = Field(alias="requestId")
    chat_id: Id = Field(alias="chatId")
    content_type: ContentType = Field(alias="contentType")
    size: Annotated[int, Field(ge=1, le=2**63 - 1)]


class MediaDownloadFrame(ClientFrame):
    action: Literal["mediaDownload"]
    request_id: RequestId = Field(alias="requestId")
    chat_id: Id = Field(alias="chatId")
    media_id: Id = Field(alias="mediaId")


class BlockFrame(ClientFrame):
    """`block` or `unblock` (PROTOCOL.md v1.1, Consent and privacy)."""

    action: Literal["block", "unblock"]
    request_id: RequestId = Field(alias="requestId")
    user_id: UserId = Field(alias="userId")


class SetPrivacyFrame(ClientFrame):
    action: Literal["setPrivacy"]
    request_id: RequestId = Field(alias="requestId")
    group_add: Literal["everyone", "chatted", "nobody"] = Field(alias="groupAdd")


MAX_TO_DEVICE_PER_FRAME = 100


class ToDeviceMessage(ClientFrame):
    user_id: Id = Field(alias="userId")
    device_id: Id = Field(alias="deviceId")
    ciphertext: ToDeviceCiphertext

    @property
    def ciphertext_bytes(self) -> bytes:
        return base64.b64decode(self.ciphertext)


class SendToDeviceFrame(ClientFrame):
    """Key material to other devices (docs/PROTOCOL.md, To-device messages): each recipient
    device gets its own ciphertext. `chatId`, when given, names the chat whose members they are."""

    action: Literal["sendToDevice"]
    request_id: RequestId = Field(alias="requestId")
    txn_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(alias="txnId")
    chat_id: Id | None = Field(None, alias="chatId")
    messages: list[ToDeviceMessage] = Field(min_length=1, max_length=MAX_TO_DEVICE_PER_FRAME)


class AckToDeviceFrame(ClientFrame):
    """The device has what these ids carried: they are deleted, then OK answers (so a client that
    syncs again after the OK is not replayed them)."""

    action: Literal["ackToDevice"]
    request_id: RequestId = Field(alias="requestId")
    ids: list[Annotated[str, StringConstraints(pattern=r"^td_[0-9]{13}_[0-9a-f]{8}$")]] = Field(
        min_length=1, max_length=MAX_TO_DEVICE_PER_FRAME
    )


class ListChatsFrame(ClientFrame):
    action: Literal["listChats"]
    request_id: RequestId = Field(alias="requestId")
    cursor: Id | None = None  # the last chatId of the previous page


class RegisterPushFrame(ClientFrame):
    """This device's push token (APNs device token, FCM registration token): when a message
    reaches the user while no device of theirs is connected, the device is notified with the chat
    id and a count, never any content. Registering again replaces the token."""

    action: Literal["registerPush"]
    request_id: RequestId = Field(alias="requestId")
    platform: Literal["apns", "apns_sandbox", "fcm"]
    # Printable ASCII: APNs tokens are 64 hex digits, FCM tokens about 160 URL-safe characters.
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$")]


class UnregisterPushFrame(ClientFrame):
    """This device gets no more notifications (a logout, or notifications turned off)."""

    action: Literal["unregisterPush"]
    request_id: RequestId = Field(alias="requestId")
