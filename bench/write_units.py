"""DynamoDB write units of what the server stores, computed from the very items it writes: an
item's size as DynamoDB bills it, 2 units per started KB of each item a transaction writes, and
the inbox items a rotation's sendToDevice frames become (dal/inbox_store.py: each frame cut into
parts of at most PART_MAX messages, each part one TransactWriteItems with its TXN item)."""

from __future__ import annotations

import base64
import math
import time
from decimal import Decimal
from typing import Any

from chat_backend.dal.inbox_store import PART_MAX, InboxStore, OutgoingToDevice
from chat_backend.models.common import iso_at

KB = 1024
TRANSACT_UNITS_PER_KB = 2  # a transactional write costs twice a standard one


def number_bytes(number: str) -> int:
    """DynamoDB's size of a number: 1 byte per two significant digits, plus 1."""
    digits = format(abs(Decimal(number)).normalize(), "f").replace(".", "").strip("0")
    return math.ceil(len(digits) / 2) + 1


def attribute_bytes(value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute value in the low-level form (`{"S": ...}`)."""
    [(kind, v)] = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "B":
        return len(bytes(v))
    if kind == "N":
        return number_bytes(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + attribute_bytes(x) for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + attribute_bytes(x) for k, x in v.items())
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(number_bytes(n) for n in v)
    if kind == "BS":
        return sum(len(bytes(b)) for b in v)
    raise ValueError(f"unknown attribute type {kind}")


def item_bytes(item: dict[str, dict[str, Any]]) -> int:
    """An item's size as DynamoDB bills it: each attribute's name (UTF-8) and value."""
    return sum(len(name.encode()) + attribute_bytes(value) for name, value in item.items())


def transact_write_units(items: list[dict[str, dict[str, Any]]]) -> int:
    """Write units of a TransactWriteItems putting `items`: 2 per started KB of each item."""
    return sum(TRANSACT_UNITS_PER_KB * max(1, math.ceil(item_bytes(i) / KB)) for i in items)


class TransactionRecorder:
    """A DynamoDB client that keeps the TransactWriteItems it is given (and writes nothing)."""

    def __init__(self) -> None:
        self.transactions: list[list[dict[str, Any]]] = []

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        self.transactions.append(TransactItems)
        return {}


def inbox_transactions(
    sender: str, sender_device: str, frames: list[dict[str, Any]]
) -> list[list[dict[str, dict[str, Any]]]]:
    """The items the server writes for these sendToDevice frames: each frame cut into parts of
    PART_MAX messages (as logic/to_device.send_to_device does), each part stored by
    InboxStore.store_part in one transaction. One list of items per transaction."""
    recorder = TransactionRecorder()
    inbox = InboxStore("inbox", ddb=recorder)
    created_at = iso_at(time.time())
    for frame in frames:
        messages = [
            OutgoingToDevice(m["userId"], m["deviceId"], base64.b64decode(m["ciphertext"]))
            for m in frame["messages"]
        ]
        for part, start in enumerate(range(0, len(messages), PART_MAX)):
            inbox.store_part(
                sender, sender_device, frame["txnId"], part, messages[start : start + PART_MAX], created_at
            )
    return [[entry["Put"]["Item"] for entry in txn] for txn in recorder.transactions]
