"""The chats and messages tables: membership, per-chat sequencing, idempotent appends, replay."""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chat_backend.dal.aws import av, client, from_item, is_conditional_failure, to_item
from chat_backend.models import ChatMeta, SendRecord, StoredMedia, StoredMessage

META = "META"
TRANSACT_MAX_ITEMS = 100
BATCH_GET_MAX_KEYS = 100
BATCH_WRITE_MAX_ITEMS = 25
UNPROCESSED_MAX_ROUNDS = 8


def member_sk(user_id: str) -> str:
    return f"MEMBER#{user_id}"


def dedup_sk(user_id: str, client_msg_id: str) -> str:
    return f"DEDUP#{user_id}#{client_msg_id}"


class HeadMoved(Exception):
    """Another write took the seq we tried to assign: try again above `head_seq` (the head the
    failed condition saw, when DynamoDB returned it). `members_version` tells whether the
    membership changed meanwhile (then the caller's membership must be checked again)."""

    def __init__(self, head_seq: int | None, members_version: int | None = None) -> None:
        super().__init__(head_seq)
        self.head_seq = head_seq
        self.members_version = members_version


def media_sk(media_id: str) -> str:
    return f"MEDIA#{media_id}"


class MediaNotInChat(Exception):
    """A send named a mediaId that is not a MEDIA# item of its chat (unknown, or another chat's)."""


class MediaExists(Exception):
    pass


class DuplicateSend(Exception):
    """This (user, clientMsgId) was already accepted."""


class ChatExists(Exception):
    pass


@dataclass(frozen=True)
class MembershipContext:
    chat: ChatMeta | None
    roles: dict[str, str]  # the asked-about users who are members -> role


@dataclass(frozen=True)
class SendContext:
    chat: ChatMeta | None
    role: str | None
    previous: SendRecord | None


def chat_meta(item: dict[str, Any]) -> ChatMeta:
    v = from_item(item)
    return ChatMeta(
        chat_id=v["chatId"],
        kind=v["kind"],
        name=v.get("name"),
        head_seq=int(v["headSeq"]),
        member_count=int(v["memberCount"]),
        created_at=v["createdAt"],
        members_version=int(v.get("membersVersion", 0)),
    )


def _message(item: dict[str, Any]) -> StoredMessage:
    v = from_item(item)
    return StoredMessage(
        chat_id=v["chatId"],
        seq=int(v["seq"]),
        server_msg_id=v["serverMsgId"],
        sender=v["sender"],
        sender_device=v.get("senderDevice"),
        ciphertext=bytes(v["ciphertext"]),
        media_ids=list(v.get("mediaIds", [])),
        created_at=v["createdAt"],
        members_version=int(v["membersVersion"]) if "membersVersion" in v else None,
    )


def message_from_image(image: dict[str, Any]) -> StoredMessage:
    """A message from a stream record's NewImage (same attribute-value shape as an item).
    Lambda delivers stream records as JSON, so binary values arrive there base64-encoded."""
    return _message(
        {k: {"B": base64.b64decode(v["B"])} if isinstance(v.get("B"), str) else v for k, v in image.items()}
    )


def _member_item(chat_id: str, user_id: str, role: str, joined_at: str) -> dict[str, Any]:
    # memberUserId feeds the sparse byMember index (a user's chats).
    return to_item(
        {
            "chatId": chat_id,
            "sk": member_sk(user_id),
            "memberUserId": user_id,
            "role": role,
            "joinedAt": joined_at,
        }
    )


def _send_record(item: dict[str, Any]) -> SendRecord:
    v = from_item(item)
    return SendRecord(server_msg_id=v["serverMsgId"], seq=int(v["seq"]), created_at=v["createdAt"])


def _cancellation_codes(exc: ClientError) -> list[str]:
    return [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]


def _head_moved(exc: ClientError) -> HeadMoved:
    """A cancelled transaction whose first item is the META head update: the head moved (the
    failed condition returns the current META), or another transaction held an item: retry."""
    reasons: list[Any] = list(exc.response.get("CancellationReasons", []))
    if not reasons or reasons[0].get("Code") != "ConditionalCheckFailed":
        return HeadMoved(None)
    item = reasons[0].get("Item", {})
    head = item.get("headSeq", {}).get("N")
    return HeadMoved(
        int(head) if head is not None else None, int(item.get("membersVersion", {}).get("N", "0"))
    )


class ChatStore:
    def __init__(
        self, chats_table: str, messages_table: str, ddb: Any | None = None, receipts_table: str | None = None
    ) -> None:
        self.chats_table = chats_table
        self.messages_table = messages_table
        # Where a removed member's receipt watermarks go with the membership (when given).
        self.receipts_table = receipts_table
        self.ddb = ddb or client("dynamodb")

    # --- sending ---------------------------------------------------------------------------------

    def send_context(self, chat_id: str, user_id: str, client_msg_id: str) -> SendContext:
        """Chat head, the sender's role and any earlier answer to this clientMsgId: one round trip."""
        keys = [
            {"chatId": av(chat_id), "sk": av(META)},
            {"chatId": av(chat_id), "sk": av(member_sk(user_id))},
            {"chatId": av(chat_id), "sk": av(dedup_sk(user_id, client_msg_id))},
        ]
        items = self._batch_get(self.chats_table, keys, consistent=True)
        by_sk = {i["sk"]["S"]: i for i in items}
        meta = by_sk.get(META)
        member = by_sk.get(member_sk(user_id))
        dedup = by_sk.get(dedup_sk(user_id, client_msg_id))
        return SendContext(
            chat=chat_meta(meta) if meta else None,
            role=member["role"]["S"] if member else None,
            previous=_send_record(dedup) if dedup else None,
        )

    def append_message(self, message: StoredMessage, client_msg_id: str, dedup_expires_at: int) -> None:
        """Advance the head n-1 -> n, store the message at n and the dedup record, all or nothing."""
        dedup = {
            "chatId": message.chat_id,
            "sk": dedup_sk(message.sender, client_msg_id),
            "serverMsgId": message.server_msg_id,
            "seq": message.seq,
            "createdAt": message.created_at,
            "expiresAt": dedup_expires_at,
        }
        # Each attached mediaId must be a MEDIA# item of this very chat (else a member could attach,
        # then download, another chat's media); marking it attached is what lets it be downloaded.
        media_updates = [
            {
                "Update": {
                    "TableName": self.chats_table,
                    "Key": {"chatId": av(message.chat_id), "sk": av(media_sk(media_id))},
                    "UpdateExpression": "SET attached = :t",
                    "ConditionExpression": "attribute_exists(sk)",
                    "ExpressionAttributeValues": {":t": av(True)},
                }
            }
            for media_id in dict.fromkeys(message.media_ids)  # one operation per item in a transaction
        ]
        try:
            self.ddb.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.chats_table,
                            "Key": {"chatId": av(message.chat_id), "sk": av(META)},
                            "UpdateExpression": "SET headSeq = :n",
                            "ConditionExpression": "headSeq = :prev",
                            # A lost race returns the current head: the retry needs no re-read.
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                            "ExpressionAttributeValues": {
                                ":n": av(message.seq),
                                ":prev": av(message.seq - 1),
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.messages_table,
                            "Item": to_item(self._message_values(message)),
                            "ConditionExpression": "attribute_not_exists(seq)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.chats_table,
                            "Item": to_item(dedup),
                            "ConditionExpression": "attribute_not_exists(sk)",
                        }
                    },
                    *media_updates,
                ]
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons: list[Any] = list(exc.response.get("CancellationReasons", []))
            codes = [r.get("Code", "None") for r in reasons]
            # Items: 0 the META head, 1 the message, 2 the dedup record, 3.. the media.
            if len(codes) >= 3 and codes[2] == "ConditionalCheckFailed":
                raise DuplicateSend() from exc
            if "ConditionalCheckFailed" in codes[3:]:
                raise MediaNotInChat() from exc
            raise _head_moved(exc) from exc

    def previous_send(self, chat_id: str, user_id: str, client_msg_id: str) -> SendRecord | None:
        resp = self.ddb.get_item(
            TableName=self.chats_table,
            Key={"chatId": av(chat_id), "sk": av(dedup_sk(user_id, client_msg_id))},
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return _send_record(item) if item else None

    @staticmethod
    def _message_values(message: StoredMessage) -> dict[str, Any]:
        return {
            "chatId": message.chat_id,
            "seq": message.seq,
            "serverMsgId": message.server_msg_id,
            "sender": message.sender,
            "senderDevice": message.sender_device,
            "ciphertext": message.ciphertext,
            "mediaIds": message.media_ids,
            "createdAt": message.created_at,
            "membersVersion": message.members_version,
        }

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
        )

    # --- chats and members -----------------------------------------------------------------------

    def create_chat(self, meta: ChatMeta, created_by: str, members: dict[str, str]) -> None:
        """Members first, the META item last: a chat exists only once META does, so a crash
        half-way leaves nothing visible. Small chats go in one transaction."""
        member_items = [
            _member_item(meta.chat_id, user_id, role, meta.created_at) for user_id, role in members.items()
        ]
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
                cancelled = exc.response["Error"]["Code"] == "TransactionCanceledException"
                if cancelled and _cancellation_codes(exc)[0] == "ConditionalCheckFailed":
                    raise ChatExists() from exc
                raise
            return
        self._batch_write(self.chats_table, member_items)
        self._put_new(meta_item, ChatExists)

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
        roles = {i["memberUserId"]["S"]: i["role"]["S"] for i in items if i["sk"]["S"] != META}
        return MembershipContext(chat=chat_meta(meta) if meta else None, roles=roles)

    def change_members(
        self, chat: ChatMeta, announcement: StoredMessage, added: dict[str, str], removed: list[str]
    ) -> None:
        """One transaction: advance the head to the announcement's seq (only from the head
        `chat` was read at, so any concurrent send or membership change makes this fail with
        HeadMoved and the caller re-reads), store the announcement, and add / remove the members.
        Keeping member count and roles behind the head condition is what makes the 10,000
        limit hold under concurrent adds."""
        per_removal = 2 if self.receipts_table else 1
        if len(added) + per_removal * len(removed) + 2 > TRANSACT_MAX_ITEMS:
            raise ValueError("too many members for one transaction")
        key = {"chatId": av(chat.chat_id), "sk": av(META)}
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.chats_table,
                    "Key": key,
                    "UpdateExpression": "SET headSeq = :n, memberCount = :count, membersVersion = :v",
                    "ConditionExpression": "headSeq = :prev",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    "ExpressionAttributeValues": {
                        ":n": av(announcement.seq),
                        ":prev": av(announcement.seq - 1),
                        ":count": av(chat.member_count + len(added) - len(removed)),
                        ":v": av(chat.members_version + 1),
                    },
                }
            },
            {
                "Put": {
                    "TableName": self.messages_table,
                    "Item": to_item(self._message_values(announcement)),
                    "ConditionExpression": "attribute_not_exists(seq)",
                }
            },
        ]
        items += [
            {
                "Put": {
                    "TableName": self.chats_table,
                    "Item": _member_item(chat.chat_id, user, role, announcement.created_at),
                }
            }
            for user, role in added.items()
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
        try:
            self.ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            raise _head_moved(exc) from exc

    def member_page(
        self, chat_id: str, after: str | None, limit: int
    ) -> tuple[list[tuple[str, str]], str | None]:
        """Up to `limit` (userId, role) in userId order after the user `after`; and the last userId
        when more may follow."""
        kwargs: dict[str, Any] = {
            "TableName": self.chats_table,
            "KeyConditionExpression": "chatId = :c AND begins_with(sk, :m)",
            "ExpressionAttributeValues": {":c": av(chat_id), ":m": av("MEMBER#")},
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

    def heads(self, user_id: str, chat_ids: list[str]) -> dict[str, int]:
        """chatId -> headSeq for the chats that exist (a chat without META is not there yet) and
        that `user_id` is a member of now: the byMember index is eventually consistent, so a
        just-removed member may still be listed there; the member items, read consistently, decide."""
        heads: dict[str, int] = {}
        members: set[str] = set()
        per_call = BATCH_GET_MAX_KEYS // 2
        for start in range(0, len(chat_ids), per_call):
            keys = [
                {"chatId": av(c), "sk": av(sk)}
                for c in chat_ids[start : start + per_call]
                for sk in (META, member_sk(user_id))
            ]
            for item in self._batch_get(
                self.chats_table, keys, consistent=True, projection="chatId, sk, headSeq"
            ):
                if item["sk"]["S"] == META:
                    heads[item["chatId"]["S"]] = int(item["headSeq"]["N"])
                else:
                    members.add(item["chatId"]["S"])
        return {chat_id: head for chat_id, head in heads.items() if chat_id in members}

    def member_pages(self, chat_id: str, page_size: int = 5000) -> Iterator[list[str]]:
        """The chat's member user ids, a page at a time, read consistently (fan-out caches the
        list under the chat's membership version, so it must be that version's list)."""
        kwargs: dict[str, Any] = {
            "TableName": self.chats_table,
            "KeyConditionExpression": "chatId = :c AND begins_with(sk, :m)",
            "ExpressionAttributeValues": {":c": av(chat_id), ":m": av("MEMBER#")},
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

    # --- replay ----------------------------------------------------------------------------------

    def messages_after(self, chat_id: str, cursor: int, limit: int) -> list[StoredMessage]:
        resp = self.ddb.query(
            TableName=self.messages_table,
            KeyConditionExpression="chatId = :c AND seq > :s",
            ExpressionAttributeValues={":c": av(chat_id), ":s": av(cursor)},
            Limit=limit,
            ConsistentRead=True,
        )
        return [_message(i) for i in resp["Items"]]

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


def batch_write(ddb: Any, table: str, requests: list[dict[str, Any]]) -> None:
    """BatchWriteItem 25 requests (puts or deletes) per call, following UnprocessedItems."""
    for start in range(0, len(requests), BATCH_WRITE_MAX_ITEMS):
        pending = {table: requests[start : start + BATCH_WRITE_MAX_ITEMS]}
        for attempt in range(UNPROCESSED_MAX_ROUNDS):
            resp = ddb.batch_write_item(RequestItems=pending)
            pending = resp.get("UnprocessedItems") or {}
            if not pending:
                break
            backoff(attempt)
        else:
            raise RuntimeError(f"{table}: items still unprocessed after {UNPROCESSED_MAX_ROUNDS} rounds")


def batch_get(ddb: Any, table: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    """BatchGetItem for up to 100 keys of one table, following UnprocessedKeys until all are read."""
    return batch_get_tables(ddb, {table: request})[table]


def batch_get_tables(ddb: Any, requests: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """One BatchGetItem over several tables (up to 100 keys in all), following UnprocessedKeys."""
    found: dict[str, list[dict[str, Any]]] = {table: [] for table in requests}
    pending: dict[str, Any] = requests
    for attempt in range(UNPROCESSED_MAX_ROUNDS):
        resp = ddb.batch_get_item(RequestItems=pending)
        for table, items in resp["Responses"].items():
            found[table].extend(items)
        pending = resp.get("UnprocessedKeys") or {}
        if not pending:
            return found
        backoff(attempt)
    raise RuntimeError(f"{sorted(requests)}: keys still unprocessed after {UNPROCESSED_MAX_ROUNDS} rounds")


def backoff(attempt: int) -> None:
    """Unprocessed keys or items mean throttling: wait (jittered, growing) before asking again."""
    time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
