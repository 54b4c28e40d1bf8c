"""A chat's members: its MEMBER# items (role, where the member's history window starts), the
FORMER# items removals leave, and the transaction that commits a membership change.

A membership change is begun by `Sequencer.begin_change` (its seq, and the change marked in
flight on META) and committed here, all at once; logic/membership_changes.py orders the two.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from chat_backend.dal.aws import av, from_item, to_item
from chat_backend.dal.batching import batch_get, query_items
from chat_backend.dal.chat_items import chat_meta, former_item, member_item
from chat_backend.dal.chat_keys import MEMBER, META
from chat_backend.dal.conditional import TransactionCancelled, delete_op, put_op, transact
from chat_backend.dal.message_store import message_values
from chat_backend.errors import ChangeConflict, ChangeLost
from chat_backend.models.records import ChatMeta, StoredMessage

TRANSACT_MAX_ITEMS = 100


@dataclass(frozen=True)
class MembershipContext:
    chat: ChatMeta | None
    roles: dict[str, str]  # the asked-about users who are members -> role
    starts: dict[str, int]  # the same members -> the seq their history window starts at


class MemberStore:
    def __init__(
        self, chats_table: str, messages_table: str, ddb: Any, receipts_table: str | None = None
    ) -> None:
        self.chats_table = chats_table
        self.messages_table = messages_table  # where a change's announcement goes
        # Where a removed member's receipt watermarks go with the membership (when given).
        self.receipts_table = receipts_table
        self.ddb = ddb

    # --- reads -----------------------------------------------------------------------------------

    def membership(self, chat_id: str, user_ids: list[str]) -> MembershipContext:
        """The chat and which of `user_ids` are members (with their roles), read consistently."""
        keys = [self._key(chat_id, META)] + [
            self._key(chat_id, MEMBER.sk(u)) for u in dict.fromkeys(user_ids)
        ]
        items = batch_get(self.ddb, self.chats_table, {"Keys": keys, "ConsistentRead": True})
        meta = next((i for i in items if i["sk"]["S"] == META), None)
        members = [from_item(i) for i in items if i["sk"]["S"] != META]
        return MembershipContext(
            chat=chat_meta(meta) if meta else None,
            roles={m["memberUserId"]: m["role"] for m in members},
            starts={m["memberUserId"]: int(m.get("fromSeq", 1)) for m in members},
        )

    def role_of(self, chat_id: str, user_id: str) -> str | None:
        resp = self.ddb.get_item(
            TableName=self.chats_table, Key=self._key(chat_id, MEMBER.sk(user_id)), ConsistentRead=True
        )
        return resp["Item"]["role"]["S"] if "Item" in resp else None

    def standings(self, chat_id: str) -> list[tuple[str, str, str]]:
        """Every member as (joinedAt, userId, role), oldest first (a consistent read of them all)."""
        items = query_items(self.ddb, self._members_query(chat_id, ["memberUserId", "role", "joinedAt"]))
        return sorted((i["joinedAt"]["S"], i["memberUserId"]["S"], i["role"]["S"]) for i in items)

    def page(self, chat_id: str, after: str | None, limit: int) -> tuple[list[tuple[str, str]], str | None]:
        """Up to `limit` (userId, role) in userId order after the user `after`; and the last userId
        when more may follow."""
        request = self._members_query(chat_id, ["memberUserId", "role"], Limit=limit)
        if after is not None:
            request["ExclusiveStartKey"] = self._key(chat_id, MEMBER.sk(after))
        resp = self.ddb.query(**request)
        page = [(i["memberUserId"]["S"], i["role"]["S"]) for i in resp["Items"]]
        return page, page[-1][0] if page and "LastEvaluatedKey" in resp else None

    def pages(self, chat_id: str, page_size: int = 5000) -> Iterator[list[str]]:
        """The chat's member user ids, a page at a time, read consistently."""
        request = self._members_query(chat_id, ["memberUserId"])
        for page in self.ddb.get_paginator("query").paginate(
            **request, PaginationConfig={"PageSize": page_size}
        ):
            if page["Items"]:
                yield [i["memberUserId"]["S"] for i in page["Items"]]

    # --- a membership change ---------------------------------------------------------------------

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
        change was abandoned or its seq was filled meanwhile; ChangeConflict when the transaction
        met another operation on its items. Nothing is written then."""
        per_removal = 3 if self.receipts_table else 2
        if len(added) + per_removal * len(removed) + 3 > TRANSACT_MAX_ITEMS:
            raise ValueError("too many members for one transaction")
        chat_id, seq = chat.chat_id, announcement.seq
        items = [
            self._end_change(chat, token, chat.member_count + len(added) - len(removed)),
            put_op(self.messages_table, to_item(message_values(announcement)), "attribute_not_exists(seq)"),
            *(
                put_op(self.chats_table, member_item(chat_id, user, role, announcement.created_at, seq))
                for user, role in added.items()
            ),
            *(
                put_op(self.chats_table, former_item(chat_id, user, start, seq))
                for user, start in removed.items()
            ),
            *(delete_op(self.chats_table, self._key(chat_id, MEMBER.sk(user))) for user in removed),
        ]
        if self.receipts_table:  # a removed member no longer counts in receipts
            items += [
                delete_op(self.receipts_table, {"chatId": av(chat_id), "userId": av(user)})
                for user in removed
            ]
        if promoted is not None:
            items.append(self._make_admin(chat_id, promoted))
        try:
            transact(self.ddb, items)
        except TransactionCancelled as exc:
            if exc.failed_conditions & {0, 1}:  # the change in flight, the announcement's seq
                raise ChangeLost(chat_id) from exc
            raise ChangeConflict(chat_id) from exc

    def _end_change(self, chat: ChatMeta, token: str, member_count: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.chats_table,
                "Key": self._key(chat.chat_id, META),
                "UpdateExpression": "SET memberCount = :count REMOVE changeToken, changeSeq, changeAt",
                "ConditionExpression": "changeToken = :token",
                "ExpressionAttributeValues": {":count": av(member_count), ":token": av(token)},
            }
        }

    def _make_admin(self, chat_id: str, user_id: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.chats_table,
                "Key": self._key(chat_id, MEMBER.sk(user_id)),
                "UpdateExpression": "SET #r = :admin",
                "ConditionExpression": "attribute_exists(sk)",
                "ExpressionAttributeNames": {"#r": "role"},
                "ExpressionAttributeValues": {":admin": av("admin")},
            }
        }

    # --- keys and queries ------------------------------------------------------------------------

    def _members_query(self, chat_id: str, attributes: list[str], **request: Any) -> dict[str, Any]:
        """The Query of the chat's MEMBER# items (these attributes of each), read consistently."""
        names = {f"#{name}": name for name in attributes}  # "role" is a reserved word
        return MEMBER.query(
            self.chats_table,
            ("chatId", chat_id),
            ProjectionExpression=", ".join(names),
            ExpressionAttributeNames=names,
            ConsistentRead=True,
            **request,
        )

    @staticmethod
    def _key(chat_id: str, sk: str) -> dict[str, Any]:
        return {"chatId": av(chat_id), "sk": av(sk)}
