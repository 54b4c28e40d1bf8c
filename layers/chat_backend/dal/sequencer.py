"""A chat's sequence counter: META's `headSeq`, advanced by one single-item UpdateItem per seq.

DynamoDB applies updates of one item one after another, so any number of concurrent writers each
get their own seq at once: nobody retries against a head someone else moved (the v1 design's
retry storm). Every reservation is conditional on the membership the writer checked
(`membersVersion`, and no membership change in flight), which is what orders sends and
membership changes: a send reserved before a change is sequenced before it, and one that would
come after sees the condition fail and checks its membership again.

A membership change reserves its seq the same way, bumps `membersVersion` and marks itself in
flight (`changeToken` / `changeSeq` / `changeAt`) until its transaction commits
(`MemberStore.commit_change`) or someone abandons it (`clear_change`).
"""

from __future__ import annotations

import zlib
from typing import Any

from chat_backend.dal.aws import av, client
from chat_backend.dal.chat_items import chat_meta
from chat_backend.dal.chat_keys import META
from chat_backend.dal.conditional import (
    TRANSACTION_CONFLICT,
    ConditionFailed,
    conditional,
    conditional_or_none,
)
from chat_backend.errors import MembershipMoved
from chat_backend.models.records import ChatMeta

CHANGE_ATTRS = "changeToken, changeSeq, changeAt"


# A chat with a seq in the messages table is listed in the sparse `archiveDue` index by the time
# of its oldest one (`hotSince`, set by the first reservation after the chat was last emptied; the
# archiver moves it on). Unchanged index keys write nothing to a KEYS_ONLY index: free for sends.
HOT_SINCE = "hotSince = if_not_exists(hotSince, :now), archiveShard = if_not_exists(archiveShard, :shard)"
# 64 partitions of the index: a chat's hotSince moves about once a day (ARCHIVE_DUE_AFTER_DAYS), so
# a billion active chats write ~11,600/s to it, ~180 a partition (a partition takes 1,000/s).
ARCHIVE_SHARDS = 64


def archive_shard(chat_id: str) -> str:
    return str(zlib.crc32(chat_id.encode()) % ARCHIVE_SHARDS)


def _hot_values(chat_id: str) -> dict[str, Any]:
    return {":shard": av(archive_shard(chat_id))}


class Sequencer:
    def __init__(self, chats_table: str, ddb: Any | None = None) -> None:
        self.chats_table = chats_table
        self.ddb = ddb or client("dynamodb")

    def reserve(self, chat_id: str, members_version: int, now_ms: int, engage: str | None = None) -> ChatMeta:
        """The chat's next seq (the returned chat's `head_seq`), for a writer that checked
        membership at `members_version`. `engage`: a direct chat's sender, recorded among those
        who chose the chat (the same write)."""
        values = {":one": av(1), ":now": av(now_ms), ":v": av(members_version), **_hot_values(chat_id)}
        update = f"SET headSeq = headSeq + :one, headAt = :now, {HOT_SINCE}"
        if engage is not None:
            values[":e"] = {"SS": [engage]}
            update += " ADD engaged :e"
        return chat_meta(self._advance(chat_id, update, values, "ALL_NEW"))

    def begin_change(self, chat_id: str, members_version: int, token: str, now_ms: int) -> int:
        """The seq of a membership change decided at `members_version`; from now until it commits
        or is cleared, no send reserves (they wait) and no other change begins."""
        updated = self._advance(
            chat_id,
            "SET headSeq = headSeq + :one, headAt = :now, membersVersion = membersVersion + :one, "
            f"changeToken = :token, changeSeq = headSeq + :one, changeAt = :now, {HOT_SINCE}",
            {
                ":one": av(1),
                ":now": av(now_ms),
                ":v": av(members_version),
                ":token": av(token),
                **_hot_values(chat_id),
            },
            "UPDATED_NEW",
        )
        return int(updated["headSeq"]["N"])

    def clear_change(self, chat_id: str, token: str) -> bool:
        """Abandon the change `token` (its seq must already hold a VOID, so it can never commit).
        False when it is no longer the change in flight."""
        cleared = conditional_or_none(
            self.ddb.update_item,
            TableName=self.chats_table,
            Key=self._meta_key(chat_id),
            UpdateExpression=f"REMOVE {CHANGE_ATTRS}",
            ConditionExpression="changeToken = :token",
            ExpressionAttributeValues={":token": av(token)},
        )
        return cleared is not None

    def _advance(self, chat_id: str, update: str, values: dict[str, Any], returned: str) -> dict[str, Any]:
        try:
            resp = conditional(
                self.ddb.update_item,
                # meeting an ongoing transaction on META: for us, the membership moved
                also_refused=(TRANSACTION_CONFLICT,),
                TableName=self.chats_table,
                Key=self._meta_key(chat_id),
                UpdateExpression=update,
                ConditionExpression="membersVersion = :v AND attribute_not_exists(changeToken)",
                ExpressionAttributeValues=values,
                ReturnValues=returned,
            )
        except ConditionFailed as exc:
            raise MembershipMoved(chat_id) from exc
        return dict(resp["Attributes"])

    def _meta_key(self, chat_id: str) -> dict[str, Any]:
        return {"chatId": av(chat_id), "sk": av(META)}
