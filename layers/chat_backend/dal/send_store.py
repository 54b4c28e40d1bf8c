"""What a send reads and the claims that make it exactly-once (DEDUP items of the chats table).

A send claims its (user, clientMsgId) before it reserves a seq, so a duplicate never reserves
one: it finds the claim and waits for the claimant's answer. The claim holds a lease (a random
token and an expiry); the owner records the seq it reserved in the claim, under its lease, before
it stores the message there. So a later reader can always tell "stored at seq n" (the message at
n has the recorded serverMsgId) from "reserved n and died" (n holds nothing, or a VOID), and take
the claim over once the lease has run out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat_backend.dal.aws import av, client, from_item, to_item
from chat_backend.dal.batching import batch_get
from chat_backend.dal.chat_items import chat_meta
from chat_backend.dal.chat_keys import DEDUP, MEDIA, MEMBER, META
from chat_backend.dal.conditional import ConditionFailed, conditional_or_none, put_new
from chat_backend.models.records import ChatMeta, SendRecord


@dataclass(frozen=True)
class SendClaim:
    lease: str  # "" for records written before leases existed (they are always finished)
    lease_until_ms: int
    record: SendRecord | None  # the seq the claimant was given, once it recorded one


@dataclass(frozen=True)
class SendContext:
    chat: ChatMeta | None
    role: str | None
    claim: SendClaim | None
    missing_media: list[str]  # mediaIds of the frame that are not MEDIA# items of this chat


def _claim(item: dict[str, Any]) -> SendClaim:
    v = from_item(item)
    record = None
    if "seq" in v:
        record = SendRecord(server_msg_id=v["serverMsgId"], seq=int(v["seq"]), created_at=v["createdAt"])
    return SendClaim(lease=v.get("lease", ""), lease_until_ms=int(v.get("leaseUntil", 0)), record=record)


class SendStore:
    def __init__(self, chats_table: str, ddb: Any | None = None) -> None:
        self.chats_table = chats_table
        self.ddb = ddb or client("dynamodb")

    def context(self, chat_id: str, user_id: str, client_msg_id: str, media_ids: list[str]) -> SendContext:
        """Chat, the sender's role, any claim on this clientMsgId and the attached media: one
        consistent round trip."""
        media = list(dict.fromkeys(media_ids))
        claim_sk = DEDUP.sk(user_id, client_msg_id)
        keys = [META, MEMBER.sk(user_id), claim_sk, *(MEDIA.sk(m) for m in media)]
        items = batch_get(
            self.ddb,
            self.chats_table,
            {"Keys": [{"chatId": av(chat_id), "sk": av(sk)} for sk in keys], "ConsistentRead": True},
        )
        by_sk = {i["sk"]["S"]: i for i in items}
        meta = by_sk.get(META)
        member = by_sk.get(MEMBER.sk(user_id))
        dedup = by_sk.get(claim_sk)
        return SendContext(
            chat=chat_meta(meta) if meta else None,
            role=member["role"]["S"] if member else None,
            claim=_claim(dedup) if dedup else None,
            missing_media=[m for m in media if MEDIA.sk(m) not in by_sk],
        )

    def claim(
        self, chat_id: str, user_id: str, client_msg_id: str, lease: str, lease_until_ms: int, expires_at: int
    ) -> SendClaim | None:
        """Claim the clientMsgId under `lease`; None when claimed, else the claim that exists."""
        item = to_item(
            {
                "chatId": chat_id,
                "sk": DEDUP.sk(user_id, client_msg_id),
                "lease": lease,
                "leaseUntil": lease_until_ms,
                "expiresAt": expires_at,
            }
        )
        try:
            put_new(self.ddb, self.chats_table, item, ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ConditionFailed as exc:
            return _claim(exc.item) if exc.item else self.claim_of(chat_id, user_id, client_msg_id)
        return None

    def record(self, chat_id: str, user_id: str, client_msg_id: str, lease: str, record: SendRecord) -> bool:
        """Record the seq reserved for the claim, if `lease` still holds it."""
        return self._update(
            chat_id,
            user_id,
            client_msg_id,
            "SET seq = :seq, serverMsgId = :id, createdAt = :at",
            "lease = :lease",
            {
                ":seq": av(record.seq),
                ":id": av(record.server_msg_id),
                ":at": av(record.created_at),
                ":lease": av(lease),
            },
        )

    def take_over(
        self, chat_id: str, user_id: str, client_msg_id: str, seen: SendClaim, lease: str, lease_until_ms: int
    ) -> bool:
        """Take a claim whose lease ran out, only if it is still exactly as `seen` (same lease, same
        recorded seq: the seen seq must already hold a VOID). The old recorded seq is dropped."""
        values = {":old": av(seen.lease), ":lease": av(lease), ":until": av(lease_until_ms)}
        if seen.record is None:
            condition = "lease = :old AND attribute_not_exists(seq)"
        else:
            condition = "lease = :old AND seq = :seq"
            values[":seq"] = av(seen.record.seq)
        if not seen.lease:  # a record from before leases: no lease attribute to compare
            condition = condition.replace("lease = :old", "attribute_not_exists(lease)")
            del values[":old"]
        return self._update(
            chat_id,
            user_id,
            client_msg_id,
            "SET lease = :lease, leaseUntil = :until REMOVE seq, serverMsgId, createdAt",
            condition,
            values,
        )

    def release(self, chat_id: str, user_id: str, client_msg_id: str, lease: str) -> None:
        """Drop our claim (the send was refused after claiming): a refused send leaves nothing. Only
        called before our message is stored (a seq it recorded holds nothing of ours, or a VOID)."""
        conditional_or_none(  # not ours any more: nothing to drop
            self.ddb.delete_item,
            TableName=self.chats_table,
            Key=self._key(chat_id, user_id, client_msg_id),
            ConditionExpression="lease = :lease",
            ExpressionAttributeValues={":lease": av(lease)},
        )

    def claim_of(self, chat_id: str, user_id: str, client_msg_id: str) -> SendClaim | None:
        resp = self.ddb.get_item(
            TableName=self.chats_table, Key=self._key(chat_id, user_id, client_msg_id), ConsistentRead=True
        )
        return _claim(resp["Item"]) if "Item" in resp else None

    def _update(
        self,
        chat_id: str,
        user_id: str,
        client_msg_id: str,
        update: str,
        condition: str,
        values: dict[str, Any],
    ) -> bool:
        updated = conditional_or_none(
            self.ddb.update_item,
            TableName=self.chats_table,
            Key=self._key(chat_id, user_id, client_msg_id),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )
        return updated is not None

    def _key(self, chat_id: str, user_id: str, client_msg_id: str) -> dict[str, Any]:
        return {"chatId": av(chat_id), "sk": av(DEDUP.sk(user_id, client_msg_id))}
