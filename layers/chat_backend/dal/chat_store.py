"""The chats table: chats (META), their members (MEMBER#) and former members (FORMER#), media
announcements (MEDIA#).

Sends (claims on DEDUP# items) live in `send_store`, the seq counter in `sequencer`, messages in
`message_store`, what a user's chats' heads and history windows are in `chat_heads`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chat_backend.dal.aws import av, cancellation_codes, client, from_item, is_conditional_failure, to_item
from chat_backend.dal.batching import BATCH_GET_MAX_KEYS, BATCH_WRITE_MAX_ITEMS, batch_get, batch_write
from chat_backend.dal.chat_heads import ChatHeads
from chat_backend.dal.chat_keys import MEMBER_PREFIX, META, former_sk, media_sk, member_sk
from chat_backend.dal.message_store import message_values
from chat_backend.models.records import ChatMeta, PendingChange, StoredMedia, StoredMessage

TRANSACT_MAX_ITEMS = 100


class MediaExists(Exception):
    pass


class ChatExists(Exception):
    pass


class ChangeLost(Exception):
    """A membership change could not commit: its seq was filled with a VOID (it was too slow) or
    the change was abandoned. Nothing of it was written; decide again."""


class ChangeConflict(Exception):
    """The change's transaction met another operation on one of its items: try it again."""


@dataclass(frozen=True)
class MembershipContext:
    chat: ChatMeta | None
    roles: dict[str, str]  # the asked-about users who are members -> role
    starts: dict[str, int]  # the same members -> the seq their history window starts at


def chat_meta(item: dict[str, Any]) -> ChatMeta:
    v = from_item(item)
    change = None
    if "changeToken" in v:
        change = PendingChange(token=v["changeToken"], seq=int(v["changeSeq"]), at_ms=int(v["changeAt"]))
    pair = v.get("pair")
    return ChatMeta(
        chat_id=v["chatId"],
        kind=v["kind"],
        name=v.get("name"),
        head_seq=int(v["headSeq"]),
        member_count=int(v["memberCount"]),
        created_at=v["createdAt"],
        members_version=int(v.get("membersVersion", 0)),
        head_at_ms=int(v["headAt"]) if "headAt" in v else None,
        change=change,
        pair=(pair[0], pair[1]) if isinstance(pair, list) and len(pair) == 2 else None,
        blocked_by=frozenset(v.get("blockedBy", ())),
        engaged=frozenset(v.get("engaged", ())),
        archived_through=int(v.get("archivedThrough", 0)),
    )


def _member_item(chat_id: str, user_id: str, role: str, joined_at: str, from_seq: int) -> dict[str, Any]:
    # memberUserId feeds the sparse byMember index (a user's chats). fromSeq: the `added`
    # announcement naming the member (1 for the chat's first members), where its window starts.
    return to_item(
        {
            "chatId": chat_id,
            "sk": member_sk(user_id),
            "memberUserId": user_id,
            "role": role,
            "joinedAt": joined_at,
            "fromSeq": from_seq,
        }
    )


def _former_item(chat_id: str, user_id: str, from_seq: int, to_seq: int) -> dict[str, Any]:
    """What a removal leaves of a member: its window, through the announcement that removed it
    (no memberUserId: the byMember index lists only members)."""
    return to_item({"chatId": chat_id, "sk": former_sk(user_id), "fromSeq": from_seq, "toSeq": to_seq})


class ChatStore:
    def __init__(
        self, chats_table: str, messages_table: str, ddb: Any | None = None, receipts_table: str | None = None
    ) -> None:
        self.chats_table = chats_table
        self.messages_table = messages_table
        # Where a removed member's receipt watermarks go with the membership (when given).
        self.receipts_table = receipts_table
        self.ddb = ddb or client("dynamodb")
        self.heads = ChatHeads(chats_table, self.ddb)

    # --- media ------------------------------------------------------------------------------------

    def put_media(self, media: StoredMedia) -> None:
        """Announce an upload: the chat's MEDIA# item, not yet attached to any message."""
        item = to_item(
            {
                "chatId": media.chat_id,
                "sk": media_sk(media.media_id),
                "uploader": media.uploader,
                "contentType": media.content_type,
                "size": media.size,
                "createdAt": media.created_at,
                "attached": False,
                "expiresAt": media.expires_at,  # TTL: an upload never attached goes (removed on attach)
            }
        )
        self._put_new(item, MediaExists)

    def get_media(self, chat_id: str, media_id: str) -> StoredMedia | None:
        resp = self.ddb.get_item(
            TableName=self.chats_table,
            Key={"chatId": av(chat_id), "sk": av(media_sk(media_id))},
            ConsistentRead=True,
        )
        if "Item" not in resp:
            return None
        v = from_item(resp["Item"])
        return StoredMedia(
            chat_id=chat_id,
            media_id=media_id,
            uploader=v["uploader"],
            content_type=v["contentType"],
            size=int(v["size"]),
            created_at=v["createdAt"],
            attached=bool(v.get("attached", False)),
            attached_seqs=frozenset(int(s) for s in v.get("attachedSeqs", ())),
        )

    # --- chats and members -----------------------------------------------------------------------

    def create_chat(
        self,
        meta: ChatMeta,
        created_by: str,
        members: dict[str, str],
        keep_going: Callable[[], bool] = lambda: True,
    ) -> list[str]:
        """Members first, the META item last: a chat exists only once META does, so a crash
        half-way leaves nothing visible. Small chats go in one transaction; a large one's members
        are written 25 at a time while `keep_going()` says so, and META then counts those written
        (the first ones of `members`). Returns the members written."""
        member_items = [
            _member_item(meta.chat_id, user_id, role, meta.created_at, 1) for user_id, role in members.items()
        ]
        written = list(members)
        if len(member_items) >= TRANSACT_MAX_ITEMS:
            done = 0
            for start in range(0, len(member_items), BATCH_WRITE_MAX_ITEMS):
                if start > 0 and not keep_going():
                    break
                self._batch_write(self.chats_table, member_items[start : start + BATCH_WRITE_MAX_ITEMS])
                done = min(start + BATCH_WRITE_MAX_ITEMS, len(member_items))
            written = written[:done]
            meta = meta.model_copy(update={"member_count": len(written)})
        meta_item = to_item(
            {
                "chatId": meta.chat_id,
                "sk": META,
                "kind": meta.kind,
                "name": meta.name,
                "headSeq": meta.head_seq,
                "memberCount": meta.member_count,
                "membersVersion": meta.members_version,
                "createdAt": meta.created_at,
                "createdBy": created_by,
                "pair": list(meta.pair) if meta.pair else None,
                "engaged": set(meta.engaged) or None,
                "blockedBy": set(meta.blocked_by) or None,
            }
        )
        meta_put = {
            "Put": {
                "TableName": self.chats_table,
                "Item": meta_item,
                "ConditionExpression": "attribute_not_exists(sk)",
            }
        }
        if len(member_items) < TRANSACT_MAX_ITEMS:
            items = [meta_put] + [{"Put": {"TableName": self.chats_table, "Item": i}} for i in member_items]
            try:
                self.ddb.transact_write_items(TransactItems=items)
            except ClientError as exc:
                codes = cancellation_codes(exc)
                if codes and codes[0] == "ConditionalCheckFailed":
                    raise ChatExists() from exc
                raise
            return written
        self._put_new(meta_item, ChatExists)
        return written

    def set_blocked(self, chat_id: str, blocker: str, blocked: bool) -> bool:
        """Add `blocker` to (or take it from) a direct chat's `blockedBy`; False when the chat
        does not exist (nothing is written: no META without a chat)."""
        try:
            self.ddb.update_item(
                TableName=self.chats_table,
                Key={"chatId": av(chat_id), "sk": av(META)},
                UpdateExpression=("ADD" if blocked else "DELETE") + " blockedBy :b",
                ConditionExpression="attribute_exists(sk)",
                ExpressionAttributeValues={":b": {"SS": [blocker]}},
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def _put_new(self, item: dict[str, Any], exists: type[Exception]) -> None:
        """Put a chats-table item that must not exist yet; `exists` is raised if it does."""
        try:
            self.ddb.put_item(
                TableName=self.chats_table, Item=item, ConditionExpression="attribute_not_exists(sk)"
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                raise exists() from exc
            raise

    def membership(self, chat_id: str, user_ids: list[str]) -> MembershipContext:
        """The chat and which of `user_ids` are members (with their roles), read consistently."""
        keys = [{"chatId": av(chat_id), "sk": av(META)}] + [
            {"chatId": av(chat_id), "sk": av(member_sk(u))} for u in dict.fromkeys(user_ids)
        ]
        items = [
            item
            for start in range(0, len(keys), BATCH_GET_MAX_KEYS)
            for item in self._batch_get(self.chats_table, keys[start : start + BATCH_GET_MAX_KEYS], True)
        ]
        meta = next((i for i in items if i["sk"]["S"] == META), None)
        members = [from_item(i) for i in items if i["sk"]["S"] != META]
        return MembershipContext(
            chat=chat_meta(meta) if meta else None,
            roles={m["memberUserId"]: m["role"] for m in members},
            starts={m["memberUserId"]: int(m.get("fromSeq", 1)) for m in members},
        )

    def commit_change(
        self,
        chat: ChatMeta,
        token: str,
        announcement: StoredMessage,
        added: dict[str, str],
        removed: dict[str, int],
        promoted: str | None = None,
    ) -> None:
        """The second half of a membership change begun by `Sequencer.begin_change` (which gave
        the announcement its seq): in one transaction, end the change in flight (only if it is still
        ours), set the member count, store the announcement at its seq (only if the seq is still
        free), add the member items (their windows start at the announcement), replace each removed
        member's item with its former window (`removed`: user -> where its window started; the
        window ends at the announcement), and make `promoted` an admin. ChangeLost when the
        change was abandoned or its seq was filled meanwhile; nothing is written then."""
        per_removal = 3 if self.receipts_table else 2
        if len(added) + per_removal * len(removed) + 3 > TRANSACT_MAX_ITEMS:
            raise ValueError("too many members for one transaction")
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.chats_table,
                    "Key": {"chatId": av(chat.chat_id), "sk": av(META)},
                    "UpdateExpression": "SET memberCount = :count REMOVE changeToken, changeSeq, changeAt",
                    "ConditionExpression": "changeToken = :token",
                    "ExpressionAttributeValues": {
                        ":count": av(chat.member_count + len(added) - len(removed)),
                        ":token": av(token),
                    },
                }
            },
            {
                "Put": {
                    "TableName": self.messages_table,
                    "Item": to_item(message_values(announcement)),
                    "ConditionExpression": "attribute_not_exists(seq)",
                }
            },
        ]
        items += [
            {
                "Put": {
                    "TableName": self.chats_table,
                    "Item": _member_item(chat.chat_id, user, role, announcement.created_at, announcement.seq),
                }
            }
            for user, role in added.items()
        ]
        items += [
            {
                "Put": {
                    "TableName": self.chats_table,
                    "Item": _former_item(chat.chat_id, user, start, announcement.seq),
                }
            }
            for user, start in removed.items()
        ]
        items += [
            {
                "Delete": {
                    "TableName": self.chats_table,
                    "Key": {"chatId": av(chat.chat_id), "sk": av(member_sk(user))},
                }
            }
            for user in removed
        ]
        if self.receipts_table:  # a removed member no longer counts in receipts
            items += [
                {
                    "Delete": {
                        "TableName": self.receipts_table,
                        "Key": {"chatId": av(chat.chat_id), "userId": av(user)},
                    }
                }
                for user in removed
            ]
        if promoted is not None:
            items.append(
                {
                    "Update": {
                        "TableName": self.chats_table,
                        "Key": {"chatId": av(chat.chat_id), "sk": av(member_sk(promoted))},
                        "UpdateExpression": "SET #r = :admin",
                        "ConditionExpression": "attribute_exists(sk)",
                        "ExpressionAttributeNames": {"#r": "role"},
                        "ExpressionAttributeValues": {":admin": av("admin")},
                    }
                }
            )
        try:
            self.ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            codes = cancellation_codes(exc)
            if codes is None:
                raise
            if "ConditionalCheckFailed" in codes[:2]:
                raise ChangeLost(chat.chat_id) from exc
            raise ChangeConflict(chat.chat_id) from exc

    def standings(self, chat_id: str) -> list[tuple[str, str, str]]:
        """Every member as (joinedAt, userId, role), oldest first (a consistent read of them all)."""
        kwargs: dict[str, Any] = {
            "TableName": self.chats_table,
            "KeyConditionExpression": "chatId = :c AND begins_with(sk, :m)",
            "ExpressionAttributeValues": {":c": av(chat_id), ":m": av(MEMBER_PREFIX)},
            "ProjectionExpression": "memberUserId, #r, joinedAt",
            "ExpressionAttributeNames": {"#r": "role"},
            "ConsistentRead": True,
        }
        found = [
            (i["joinedAt"]["S"], i["memberUserId"]["S"], i["role"]["S"])
            for page in self.ddb.get_paginator("query").paginate(**kwargs)
            for i in page["Items"]
        ]
        return sorted(found)

    def member_page(
        self, chat_id: str, after: str | None, limit: int
    ) -> tuple[list[tuple[str, str]], str | None]:
        """Up to `limit` (userId, role) in userId order after the user `after`; and the last userId
        when more may follow."""
        kwargs: dict[str, Any] = {
            "TableName": self.chats_table,
            "KeyConditionExpression": "chatId = :c AND begins_with(sk, :m)",
            "ExpressionAttributeValues": {":c": av(chat_id), ":m": av(MEMBER_PREFIX)},
            "ProjectionExpression": "memberUserId, #r",
            "ExpressionAttributeNames": {"#r": "role"},
            "Limit": limit,
            "ConsistentRead": True,
        }
        if after is not None:
            kwargs["ExclusiveStartKey"] = {"chatId": av(chat_id), "sk": av(member_sk(after))}
        resp = self.ddb.query(**kwargs)
        page = [(i["memberUserId"]["S"], i["role"]["S"]) for i in resp["Items"]]
        return page, page[-1][0] if page and "LastEvaluatedKey" in resp else None

    def get_chat(self, chat_id: str) -> ChatMeta | None:
        resp = self.ddb.get_item(
            TableName=self.chats_table,
            Key={"chatId": av(chat_id), "sk": av(META)},
            ConsistentRead=True,
        )
        return chat_meta(resp["Item"]) if "Item" in resp else None

    def role_of(self, chat_id: str, user_id: str) -> str | None:
        resp = self.ddb.get_item(
            TableName=self.chats_table,
            Key={"chatId": av(chat_id), "sk": av(member_sk(user_id))},
            ConsistentRead=True,
        )
        return resp["Item"]["role"]["S"] if "Item" in resp else None

    def chat_ids_of(self, user_id: str) -> list[str]:
        """Every chat the user is a member of (the sparse byMember index)."""
        chat_ids: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.chats_table,
            "IndexName": "byMember",
            "KeyConditionExpression": "memberUserId = :u",
            "ExpressionAttributeValues": {":u": av(user_id)},
            "ProjectionExpression": "chatId",
        }
        while True:
            resp = self.ddb.query(**kwargs)
            chat_ids.extend(i["chatId"]["S"] for i in resp["Items"])
            if "LastEvaluatedKey" not in resp:
                return chat_ids
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def member_pages(self, chat_id: str, page_size: int = 5000) -> Iterator[list[str]]:
        """The chat's member user ids, a page at a time, read consistently."""
        kwargs: dict[str, Any] = {
            "TableName": self.chats_table,
            "KeyConditionExpression": "chatId = :c AND begins_with(sk, :m)",
            "ExpressionAttributeValues": {":c": av(chat_id), ":m": av(MEMBER_PREFIX)},
            "ProjectionExpression": "memberUserId",
            "Limit": page_size,
            "ConsistentRead": True,
        }
        while True:
            resp = self.ddb.query(**kwargs)
            page = [i["memberUserId"]["S"] for i in resp["Items"]]
            if page:
                yield page
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    # --- batching helpers ------------------------------------------------------------------------

    def _batch_get(
        self, table: str, keys: list[dict[str, Any]], consistent: bool, projection: str | None = None
    ) -> list[dict[str, Any]]:
        request: dict[str, Any] = {"Keys": keys, "ConsistentRead": consistent}
        if projection:
            request["ProjectionExpression"] = projection
        return batch_get(self.ddb, table, request)

    def _batch_write(self, table: str, items: list[dict[str, Any]]) -> None:
        batch_write(self.ddb, table, [{"PutRequest": {"Item": i}} for i in items])
