"""The inbox table: each device's to-device messages (key material for end-to-end encryption),
kept until the device acknowledges them.

- pk `<userId>#<deviceId>`, sk `td_<ms, 13 digits>_<random>`: one message, in arrival order.
- pk `TXN#<userId>#<deviceId>`, sk `<txnId>#<part>`: a sender's transaction part, written in the
  same DynamoDB transaction as the part's messages, so a retried txnId finds each part either
  fully stored or not at all, and stores it once (expires after a day).

User and device ids never contain `#` (models.Id).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from chat_backend.dal.aws import TableStore, av, from_item, to_item
from chat_backend.dal.batching import batch_write
from chat_backend.dal.conditional import TransactionCancelled, put_op, transact

TXN_TTL_S = 24 * 3600
INBOX_TTL_S = 30 * 24 * 3600  # a device away longer than a month gets fresh keys from its peers
PART_MAX = 99  # messages per transaction: with the part's TXN item, DynamoDB's 100 items


@dataclass(frozen=True)
class OutgoingToDevice:
    user_id: str
    device_id: str
    ciphertext: bytes


@dataclass(frozen=True)
class StoredToDevice:
    id: str
    user_id: str  # the recipient
    device_id: str
    sender: str
    sender_device: str
    ciphertext: bytes
    created_at: str


def inbox_key(user_id: str, device_id: str) -> str:
    return f"{user_id}#{device_id}"


def new_to_device_id(now_ms: int) -> str:
    return f"td_{now_ms:013d}_{secrets.token_hex(4)}"


class InboxStore(TableStore):
    def store_part(
        self,
        sender: str,
        sender_device: str,
        txn_id: str,
        part: int,
        messages: list[OutgoingToDevice],
        created_at: str,
    ) -> list[StoredToDevice] | None:
        """Store one part of a sender's transaction with its TXN item, all or nothing; None when
        that part was stored before (a retried txnId): nothing is written then."""
        now = time.time()
        stored = [
            StoredToDevice(
                id=new_to_device_id(int(now * 1000)),
                user_id=m.user_id,
                device_id=m.device_id,
                sender=sender,
                sender_device=sender_device,
                ciphertext=m.ciphertext,
                created_at=created_at,
            )
            for m in messages
        ]
        txn = {
            "device": f"TXN#{inbox_key(sender, sender_device)}",
            "id": f"{txn_id}#{part}",
            "count": len(messages),
            "expiresAt": int(now) + TXN_TTL_S,
        }
        puts = [
            put_op(
                self.table,
                to_item(
                    {
                        "device": inbox_key(s.user_id, s.device_id),
                        "id": s.id,
                        "from": s.sender,
                        "fromDevice": s.sender_device,
                        "ciphertext": s.ciphertext,
                        "createdAt": s.created_at,
                        "expiresAt": int(now) + INBOX_TTL_S,
                    }
                ),
            )
            for s in stored
        ]
        try:
            transact(self.ddb, [put_op(self.table, to_item(txn), "attribute_not_exists(id)"), *puts])
        except TransactionCancelled as exc:
            if 0 in exc.failed_conditions:  # the TXN item: this part is stored already
                return None
            raise
        return stored

    def pending(self, user_id: str, device_id: str, limit: int) -> list[StoredToDevice]:
        """The device's oldest unacknowledged messages, at most `limit`."""
        resp = self.ddb.query(
            TableName=self.table,
            KeyConditionExpression="device = :d",
            ExpressionAttributeValues={":d": av(inbox_key(user_id, device_id))},
            Limit=limit,
            ConsistentRead=True,
        )
        return [_stored(user_id, device_id, from_item(i)) for i in resp["Items"]]

    def acknowledge(self, user_id: str, device_id: str, ids: list[str]) -> None:
        """Delete the device's messages with these ids (an id it does not have changes nothing)."""
        key = inbox_key(user_id, device_id)
        batch_write(
            self.ddb,
            self.table,
            [{"DeleteRequest": {"Key": {"device": av(key), "id": av(i)}}} for i in dict.fromkeys(ids)],
        )


def _stored(user_id: str, device_id: str, v: dict[str, Any]) -> StoredToDevice:
    return StoredToDevice(
        id=v["id"],
        user_id=user_id,
        device_id=device_id,
        sender=v["from"],
        sender_device=v["fromDevice"],
        ciphertext=bytes(v["ciphertext"]),
        created_at=v["createdAt"],
    )
