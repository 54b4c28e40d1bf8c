"""Pydantic models of every frame in PROTOCOL.md (v1), and of the events our functions receive.

Client frames are strict: a wrong type is an error, not a coercion ("5" is not a seq).
Unknown fields are ignored, as the protocol says.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketConnectEventRequestContext,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketDisconnectEventRequestContext,
    APIGatewayWebSocketMessageEventModel,
    APIGatewayWebSocketMessageEventRequestContext,
)
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from chat_backend.errors import BadRequest, TooLarge

MAX_FRAME_BYTES = 128 * 1024
MAX_CIPHERTEXT_BYTES = 64 * 1024
MAX_SYNC_LIMIT = 1000
DEFAULT_SYNC_LIMIT = 500
MAX_GROUP_MEMBERS = 10_000
MAX_MEDIA_IDS = 32
MAX_MEDIA_BYTES = 100 * 1024 * 1024  # one upload (client-encrypted), 100 MiB

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Fanout = Literal["direct", "queued"]
SYSTEM_SENDER = "system"  # `from` of the membership announcements
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128)]


def iso_at(epoch_s: float) -> str:
    """ISO 8601 UTC with milliseconds, as the protocol writes times."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso_at(time.time())


def epoch_ms(iso: str) -> int:
    """The epoch milliseconds of a time written by `iso_at`."""
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _decoded_size(value: str, what: str) -> int:
    """Bytes that base64 `value` decodes to; ValueError if it is not base64."""
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not valid base64") from exc


def _decode_ciphertext(value: str) -> str:
    size = _decoded_size(value, "ciphertext")
    if size > MAX_CIPHERTEXT_BYTES:
        raise CiphertextTooLarge(size)
    return value


class CiphertextTooLarge(ValueError):
    def __init__(self, size: int) -> None:
        super().__init__(f"ciphertext is {size} bytes decoded; at most {MAX_CIPHERTEXT_BYTES}")


Ciphertext = Annotated[str, StringConstraints(min_length=1), AfterValidator(_decode_ciphertext)]


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
    cursors: dict[Id, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    limit: Annotated[int, Field(ge=1, le=MAX_SYNC_LIMIT)] = DEFAULT_SYNC_LIMIT


class CreateChatFrame(ClientFrame):
    action: Literal["createChat"]
    request_id: RequestId = Field(alias="requestId")
    kind: Literal["direct", "group"]
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    members: list[Id] = Field(min_length=1, max_length=MAX_GROUP_MEMBERS)

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


Members = Annotated[list[Id], Field(min_length=1, max_length=MAX_GROUP_MEMBERS), AfterValidator(_unique)]


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


ReceiptType = Literal["DELIVERED", "READ"]


class ReceiptFrame(ClientFrame):
    """Per message (serverMsgId) or as a watermark (upToSeq): exactly one of the two."""

    action: Literal["receipt"]
    chat_id: Id = Field(alias="chatId")
    type: ReceiptType
    server_msg_id: Id | None = Field(None, alias="serverMsgId")
    up_to_seq: Annotated[int, Field(ge=1)] | None = Field(None, alias="upToSeq")

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
    subscribe: list[Id] = Field(default_factory=list, max_length=MAX_PRESENCE_USERS)
    unsubscribe: list[Id] = Field(default_factory=list, max_length=MAX_PRESENCE_USERS)


class HeartbeatFrame(ClientFrame):
    action: Literal["heartbeat"]


class TypingFrame(ClientFrame):
    action: Literal["typing"]
    chat_id: Id = Field(alias="chatId")


MAX_KEY_BYTES = 1024  # a public key or signature, decoded
MAX_ONE_TIME_PREKEYS = 100  # per publishKeys frame


def _decode_key(value: str) -> str:
    size = _decoded_size(value, "key")
    if size > MAX_KEY_BYTES:
        raise ValueError(f"{size} bytes decoded; at most {MAX_KEY_BYTES}")
    return value


# Public key material: base64, at most 1 KiB decoded. The server never looks inside.
KeyBytes = Annotated[
    str, StringConstraints(min_length=1, max_length=4 * MAX_KEY_BYTES), AfterValidator(_decode_key)
]
KeyId = Annotated[int, Field(ge=0, le=2**32 - 1)]


class SignedPreKey(ClientFrame):
    key_id: KeyId = Field(alias="keyId")
    public_key: KeyBytes = Field(alias="publicKey")
    signature: KeyBytes


class OneTimePreKey(ClientFrame):
    key_id: KeyId = Field(alias="keyId")
    public_key: KeyBytes = Field(alias="publicKey")


class PublishKeysFrame(ClientFrame):
    """The calling device's keys: identity key and signed prekey replace the previous ones; one-time
    prekeys are added (the same keyId again replaces that key)."""

    action: Literal["publishKeys"]
    identity_key: KeyBytes = Field(alias="identityKey")
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


class FetchKeysFrame(ClientFrame):
    action: Literal["fetchKeys"]
    request_id: RequestId = Field(alias="requestId")
    user_id: Id = Field(alias="userId")


# type/subtype of RFC 6838 restricted-name characters, parameters not allowed (the policy matches exactly).
ContentType = Annotated[
    str,
    StringConstraints(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
    ),
]


class MediaUploadFrame(ClientFrame):
    """`size` above MAX_MEDIA_BYTES is TOO_LARGE (checked by the use case); below 1 a BAD_REQUEST."""

    action: Literal["mediaUpload"]
    request_id: RequestId = Field(alias="requestId")
    chat_id: Id = Field(alias="chatId")
    content_type: ContentType = Field(alias="contentType")
    size: Annotated[int, Field(ge=1)]


class MediaDownloadFrame(ClientFrame):
    action: Literal["mediaDownload"]
    request_id: RequestId = Field(alias="requestId")
    chat_id: Id = Field(alias="chatId")
    media_id: Id = Field(alias="mediaId")


F = TypeVar("F", bound=ClientFrame)


# --- server frames -------------------------------------------------------------------------------


class ServerFrame(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


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


class VoidFrame(ServerFrame):
    """A seq that carries no message (PROTOCOL.md v1.1): its writer died or stalled before storing
    it. Delivered live and in sync like a message, so a client sees every seq exactly once."""

    type: Literal["VOID"] = "VOID"
    chat_id: str = Field(alias="chatId")
    seq: int


class SyncDoneFrame(ServerFrame):
    type: Literal["SYNC_DONE"] = "SYNC_DONE"
    request_id: str = Field(alias="requestId")
    heads: dict[str, int]
    more: bool


class ChatFrame(ServerFrame):
    type: Literal["CHAT"] = "CHAT"
    request_id: str = Field(alias="requestId")
    chat_id: str = Field(alias="chatId")
    kind: Literal["direct", "group"]
    name: str | None
    created_at: str = Field(alias="createdAt")
    member_count: int = Field(alias="memberCount")
    role: Literal["admin", "member"]


class TypingNoticeFrame(ServerFrame):
    type: Literal["TYPING"] = "TYPING"
    chat_id: str = Field(alias="chatId")
    user_id: str = Field(alias="userId")


class MemberEntry(ServerFrame):
    user_id: str = Field(alias="userId")
    role: Literal["admin", "member"]


class MembersFrame(ServerFrame):
    type: Literal["MEMBERS"] = "MEMBERS"
    request_id: str = Field(alias="requestId")
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


class ReceiptsFrame(ServerFrame):
    type: Literal["RECEIPTS"] = "RECEIPTS"
    request_id: str = Field(alias="requestId")
    receipts: list[ReceiptEntry]
    next: str | None


class PresenceNoticeFrame(ServerFrame):
    type: Literal["PRESENCE"] = "PRESENCE"
    user_id: str = Field(alias="userId")
    status: Literal["ONLINE", "OFFLINE"]
    last_seen: str | None = Field(alias="lastSeen")


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


class KeysPublishedFrame(ServerFrame):
    type: Literal["KEYS_PUBLISHED"] = "KEYS_PUBLISHED"
    one_time_pre_keys: int = Field(alias="oneTimePreKeys")  # unused ones the device now has


class KeysFrame(ServerFrame):
    type: Literal["KEYS"] = "KEYS"
    request_id: str = Field(alias="requestId")
    user_id: str = Field(alias="userId")
    devices: list[DeviceKeys]


class PongFrame(ServerFrame):
    """`heads` (v1.1): the chats whose head moved since the connection's previous heartbeat, so a
    connected client notices a push it missed. Left out when there are none."""

    type: Literal["PONG"] = "PONG"
    heads: dict[str, int] | None = None

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class MediaUploadAnswer(ServerFrame):
    """Where to POST the (encrypted) bytes: `url` with `fields` as the form, the file last."""

    type: Literal["MEDIA_UPLOAD"] = "MEDIA_UPLOAD"
    request_id: str = Field(alias="requestId")
    media_id: str = Field(alias="mediaId")
    url: str
    fields: dict[str, str]
    expires_at: str = Field(alias="expiresAt")


class MediaUrlFrame(ServerFrame):
    type: Literal["MEDIA_URL"] = "MEDIA_URL"
    request_id: str = Field(alias="requestId")
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

    def to_json(self) -> str:
        exclude = {"retry_after_ms"} if self.retry_after_ms is None else set()
        return self.model_dump_json(by_alias=True, exclude=exclude)


# --- events --------------------------------------------------------------------------------------


class AuthorizerContext(BaseModel):
    """What the $connect authorizer put in its context; API Gateway passes it on every route."""

    user_id: Id = Field(alias="userId")
    device_id: Id = Field(alias="deviceId")


class RouteRequestContext(APIGatewayWebSocketMessageEventRequestContext):
    authorizer: AuthorizerContext


class RouteEvent(APIGatewayWebSocketMessageEventModel):
    """A WebSocket route invocation (MESSAGE events) carrying the authorizer's identity."""

    request_context: RouteRequestContext = Field(alias="requestContext")  # type: ignore[assignment]


class ConnectRequestContext(APIGatewayWebSocketConnectEventRequestContext):
    authorizer: AuthorizerContext


class ConnectEvent(APIGatewayWebSocketConnectEventModel):
    request_context: ConnectRequestContext = Field(alias="requestContext")  # type: ignore[assignment]


class DisconnectRequestContext(APIGatewayWebSocketDisconnectEventRequestContext):
    authorizer: AuthorizerContext


class DisconnectEvent(APIGatewayWebSocketDisconnectEventModel):
    request_context: DisconnectRequestContext = Field(alias="requestContext")  # type: ignore[assignment]


class Caller(BaseModel):
    """Who sent a frame, from the token (never from the frame)."""

    model_config = ConfigDict(frozen=True)
    user_id: str
    device_id: str
    connection_id: str


def decode_body(body: str | None) -> dict[str, Any]:
    """The frame as a JSON object, or BadRequest / TooLarge."""
    if body is None:
        raise BadRequest("empty frame")
    if len(body.encode()) > MAX_FRAME_BYTES:
        raise TooLarge(f"frame is over {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise BadRequest("frame is not valid JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("frame is not a JSON object")
    return data


def parse_frame(model: type[F], data: dict[str, Any]) -> F:
    """Validate a decoded frame; map the first problem to the protocol's error."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            ctx_error = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_error, CiphertextTooLarge):
                raise TooLarge(str(ctx_error)) from exc
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "frame"
        raise BadRequest(f"{where}: {first['msg']}") from exc


def echo_ids(data: dict[str, Any] | None) -> dict[str, str | None]:
    """requestId / clientMsgId of a frame, when it had them, for the ERROR it gets."""
    data = data or {}
    return {
        key: value if isinstance(value, str) and len(value) <= 128 else None
        for key, value in (("requestId", data.get("requestId")), ("clientMsgId", data.get("clientMsgId")))
    }


# --- stored records ------------------------------------------------------------------------------


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


class Recipient(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)
    user_id: str = Field(alias="u")
    device_id: str = Field(alias="d")
    connection_id: str = Field(alias="c")


class PresenceGuard(BaseModel):
    """A PRESENCE push is still worth making only while the watched user's state is this version
    (a retried push must not overwrite a newer status)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    user_id: str = Field(alias="u")
    version: int = Field(alias="v")


class DeliveryEnvelope(BaseModel):
    """One SQS message: a frame to push and the connections to push it to. `attempt` counts the
    pushes already tried for these recipients (0: none; a retry carries the failed ones alone)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    frame: str
    recipients: list[Recipient]
    attempt: int = Field(0, alias="a")
    presence: PresenceGuard | None = Field(None, alias="p")

    def model_dump_json(self, **kwargs: Any) -> str:  # type: ignore[override]
        return super().model_dump_json(by_alias=True, exclude_none=True, **kwargs)


class SummaryJob(BaseModel):
    """One summaries-queue message: recount the receipts of one message of a large group and tell
    its sender (RECEIPT_SUMMARY)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    chat_id: str = Field(alias="chatId")
    seq: int
    server_msg_id: str = Field(alias="serverMsgId")
    sender: str

    def model_dump_json(self, **kwargs: Any) -> str:  # type: ignore[override]
        return super().model_dump_json(by_alias=True, **kwargs)
