"""The messages table: one item per (chatId, seq), a message or a VOID, written once.

Every write here is conditional on the seq being free, which is what settles a race between a
slow writer and whoever fills its seq with a VOID: the first to write wins, the other learns it
(`SeqTaken`) and nothing is overwritten.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from chat_backend.dal.aws import av, client, from_item, to_item
from chat_backend.dal.batching import query_items
from chat_backend.dal.chat_keys import MEDIA
from chat_backend.dal.conditional import ConditionFailed, TransactionCancelled, put_new, put_op, transact
from chat_backend.errors import MediaNotInChat, SeqTaken
from chat_backend.models.common import MAX_SEQ, SYSTEM_SENDER
from chat_backend.models.records import Stored, StoredMessage, StoredVoid

VOID = "VOID"  # the `kind` of a seq that carries no message


def stored_from_item(item: dict[str, Any]) -> Stored:
    v = from_item(item)
    version = int(v["membersVersion"]) if "membersVersion" in v else None
    if v.get("kind") == VOID:
        return StoredVoid(
            chat_id=v["chatId"], seq=int(v["seq"]), created_at=v["createdAt"], members_version=version
        )
    return StoredMessage(
        chat_id=v["chatId"],
        seq=int(v["seq"]),
        server_msg_id=v["serverMsgId"],
        sender=v["sender"],
        sender_device=v.get("senderDevice"),
        ciphertext=bytes(v["ciphertext"]),
        media_ids=list(v.get("mediaIds", [])),
        created_at=v["createdAt"],
        members_version=version,
        fanout=v.get("fanout", "queued"),
        hidden_from=frozenset(v.get("hiddenFrom", ())),
    )


def stored_from_image(image: dict[str, Any]) -> Stored:
    """An item from a stream record's NewImage (same attribute-value shape as an item). Lambda
    delivers stream records as JSON, so binary values arrive there base64-encoded."""
    return stored_from_item(
        {k: {"B": base64.b64decode(v["B"])} if isinstance(v.get("B"), str) else v for k, v in image.items()}
    )


def message_values(message: StoredMessage) -> dict[str, Any]:
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
        "fanout": message.fanout,
        "hiddenFrom": set(message.hidden_from) or None,  # a string set; DynamoDB has no empty sets
    }


def void_values(void: StoredVoid) -> dict[str, Any]:
    # A VOID is always pushed by the fan-out function: holes are rare, so the slower path is fine.
    return {
        "chatId": void.chat_id,
        "seq": void.seq,
        "kind": VOID,
        "createdAt": void.created_at,
        "membersVersion": void.members_version,
        "fanout": "queued",
    }


def seq_range(table: str, chat_id: str, first: int, last: int, **request: Any) -> dict[str, Any]:
    """A Query request for the chat's items with first <= seq <= last, read consistently and in
    ascending order unless `request` (which adds the rest) says otherwise."""
    return {
        "TableName": table,
        "KeyConditionExpression": "chatId = :c AND seq BETWEEN :first AND :last",
        "ExpressionAttributeValues": {":c": av(chat_id), ":first": av(first), ":last": av(last)},
        "ConsistentRead": True,
        **request,
    }


class MessageStore:
    def __init__(self, messages_table: str, chats_table: str, ddb: Any | None = None) -> None:
        self.messages_table = messages_table
        self.chats_table = chats_table  # where a message's MEDIA# items live
        self.ddb = ddb or client("dynamodb")

    def put_message(self, message: StoredMessage) -> None:
        """Store the message at its seq if that seq is free (else SeqTaken). Attached media are
        marked in the same transaction, each only if it is a MEDIA# item of this very chat (else a
        member could attach, then download, another chat's media): MediaNotInChat, nothing stored."""
        item = to_item(message_values(message))
        if not message.media_ids:
            try:
                put_new(self.ddb, self.messages_table, item, sort_key="seq")
            except ConditionFailed as exc:
                raise SeqTaken() from exc
            return
        media_updates = [
            {
                "Update": {
                    "TableName": self.chats_table,
                    "Key": {"chatId": av(message.chat_id), "sk": av(MEDIA.sk(media_id))},
                    # attachedSeqs: which members may download it (those whose window holds one)
                    "UpdateExpression": "SET attached = :t ADD attachedSeqs :seq REMOVE expiresAt",
                    "ConditionExpression": "attribute_exists(sk)",
                    "ExpressionAttributeValues": {":t": av(True), ":seq": {"NS": [str(message.seq)]}},
                }
            }
            for media_id in dict.fromkeys(message.media_ids)  # one operation per item in a transaction
        ]
        try:
            transact(
                self.ddb, [put_op(self.messages_table, item, "attribute_not_exists(seq)"), *media_updates]
            )
        except TransactionCancelled as exc:
            if 0 in exc.failed_conditions:
                raise SeqTaken() from exc
            if exc.failed_conditions:
                raise MediaNotInChat() from exc
            raise

    def fill_void(self, void: StoredVoid) -> Stored:
        """Put a VOID at the seq unless something is there already; returns what the seq holds now
        (the VOID, or the message that got there first)."""
        try:
            put_new(self.ddb, self.messages_table, to_item(void_values(void)), sort_key="seq")
        except ConditionFailed as exc:
            found = self.at(void.chat_id, void.seq)
            if found is None:  # cannot be: conditional puts are never undone
                raise RuntimeError(f"{void.chat_id}#{void.seq} was taken, then vanished") from exc
            return found
        return void

    def at(self, chat_id: str, seq: int) -> Stored | None:
        resp = self.ddb.get_item(
            TableName=self.messages_table,
            Key={"chatId": av(chat_id), "seq": av(seq)},
            ConsistentRead=True,
        )
        return stored_from_item(resp["Item"]) if "Item" in resp else None

    def version_before(self, chat_id: str, seq: int) -> int:
        """The membership version of the last item stored before `seq` (0: none): the version a
        hole at `seq` was reserved under, give or take abandoned changes (which change nobody)."""
        resp = self.ddb.query(
            TableName=self.messages_table,
            KeyConditionExpression="chatId = :c AND seq < :s",
            ExpressionAttributeValues={":c": av(chat_id), ":s": av(seq)},
            ProjectionExpression="membersVersion",
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = resp["Items"]
        return int(items[0]["membersVersion"]["N"]) if items and "membersVersion" in items[0] else 0

    def after(self, chat_id: str, cursor: int, limit: int, up_to: int = MAX_SEQ) -> list[Stored]:
        """Up to `limit` items with cursor < seq <= up_to, ascending (a hole is simply not there)."""
        resp = self.ddb.query(**seq_range(self.messages_table, chat_id, cursor + 1, up_to, Limit=limit))
        return [stored_from_item(i) for i in resp["Items"]]

    def announcements_after(self, chat_id: str, seq: int) -> Iterator[StoredMessage]:
        """The system messages (membership changes) after `seq`, ascending. Reads the messages in
        between (filtered server-side): only used when a stream consumer lags a membership change."""
        request = {
            "TableName": self.messages_table,
            "KeyConditionExpression": "chatId = :c AND seq > :s",
            "FilterExpression": "sender = :system",
            "ExpressionAttributeValues": {":c": av(chat_id), ":s": av(seq), ":system": av(SYSTEM_SENDER)},
            "ConsistentRead": True,
        }
        for item in query_items(self.ddb, request):
            stored = stored_from_item(item)
            if isinstance(stored, StoredMessage):
                yield stored
