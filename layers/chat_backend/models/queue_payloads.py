"""What the queues carry: delivery envelopes, receipt-summary, member, notify and archive jobs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class MemberJob(BaseModel):
    """One member-jobs message: add these users to the chat, as `by` asked (the rest of an
    addMembers or a createChat too large for one invocation; logic/member_jobs.py)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    chat_id: str = Field(alias="chatId")
    by: str
    users: list[str]

    def model_dump_json(self, **kwargs: Any) -> str:  # type: ignore[override]
        return super().model_dump_json(by_alias=True, **kwargs)


class NotifyJob(BaseModel):
    """One notify-queue message: members of a chat who had no device connected when its message
    `seq` was pushed (logic/notifications.py). `large`: the chat is past the direct-push size,
    so its members are notified at most once per chat window."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    chat_id: str = Field(alias="chatId")
    seq: int
    users: list[str]
    large: bool = False

    def model_dump_json(self, **kwargs: Any) -> str:  # type: ignore[override]
        return super().model_dump_json(by_alias=True, **kwargs)


class ArchiveJob(BaseModel):
    """One archive-queue message of the archiver's fan-out (logic/archive.py): list one shard of
    the archiveDue index (from `start`, a DynamoDB LastEvaluatedKey, when a listing goes on in a
    new invocation), or archive `chatIds`. `now`: the scheduled run's time (epoch ms), so every job
    of a run cuts at the same moment."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    now_ms: int = Field(alias="now")
    shard: str | None = None
    start: dict[str, Any] | None = None
    chat_ids: list[str] = Field(default_factory=list, alias="chatIds")

    @model_validator(mode="after")
    def _one_kind(self) -> ArchiveJob:
        if (self.shard is None) == (not self.chat_ids):
            raise ValueError("an archive job lists a shard or names chats, one of the two")
        return self

    def model_dump_json(self, **kwargs: Any) -> str:  # type: ignore[override]
        return super().model_dump_json(by_alias=True, exclude_defaults=True, **kwargs)
