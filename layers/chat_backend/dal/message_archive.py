"""The archive: a chat's messages past the hot window, in S3, and where each range of them is.

An object `<chatId>/<firstSeq>-<lastSeq>.json.gz` holds the stored items of a gapless seq range
(messages and VOIDs, attribute for attribute as the messages table held them), gzipped JSON. Each
committed range has an `ARCHIVE#<lastSeq>` item in the chats table (the chat's partition), so a
reader finds the object holding a seq with one Query (no S3 List), and META's `archivedThrough`
says up to which seq the archive, not the messages table, is where to read.

Order of writes (logic/archive.py): object written and read back; then, in one transaction, the
range item and `archivedThrough`; only then are the range's items deleted from the messages table.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chat_backend.dal.aws import av, cancellation_codes, client, from_item, to_item
from chat_backend.dal.batching import batch_write
from chat_backend.dal.chat_keys import META
from chat_backend.dal.message_store import message_values, stored_from_image, void_values
from chat_backend.models.common import MAX_SEQ, epoch_ms
from chat_backend.models.records import Stored, StoredMessage

RANGE_PREFIX = "ARCHIVE#"
FORMAT_VERSION = 1
CACHED_RANGES = 16  # decoded objects a warm function keeps (a device paging through one range)


def range_sk(last_seq: int) -> str:
    return f"{RANGE_PREFIX}{last_seq:016d}"  # MAX_SEQ has 16 digits


def object_key(chat_id: str, first_seq: int, last_seq: int) -> str:
    return f"{chat_id}/{first_seq}-{last_seq}.json.gz"


class ArchiveRaced(Exception):
    """`archivedThrough` is no longer what this archiver read: another one got there first."""


class ArchiveMismatch(Exception):
    """An object read back is not what was written: nothing is committed or deleted."""


@dataclass(frozen=True)
class ArchiveRange:
    chat_id: str
    first_seq: int
    last_seq: int
    key: str
    count: int
    size: int  # bytes of the object (compressed)
    raw_size: int = 0  # bytes of its JSON before compression


def record(item: Stored) -> dict[str, Any]:
    """A stored item as the messages table holds it, in DynamoDB JSON with binaries base64'd (the
    shape of a stream record's NewImage, which `stored_from_image` reads back)."""
    values = message_values(item) if isinstance(item, StoredMessage) else void_values(item)
    return {
        name: {"B": base64.b64encode(value["B"]).decode()} if "B" in value else value
        for name, value in to_item(values).items()
    }


def encode(chat_id: str, items: Sequence[Stored]) -> tuple[bytes, int]:
    """The object's bytes (gzip with no timestamp: the same items always give the same bytes) and
    the JSON's size."""
    body = {
        "v": FORMAT_VERSION,
        "chatId": chat_id,
        "firstSeq": items[0].seq,
        "lastSeq": items[-1].seq,
        "items": [record(i) for i in items],
    }
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return gzip.compress(raw, compresslevel=9, mtime=0), len(raw)


def decode(data: bytes) -> list[Stored]:
    body = json.loads(gzip.decompress(data))
    return [stored_from_image(i) for i in body["items"]]


def record_size(item: Stored) -> int:
    return len(json.dumps(record(item), separators=(",", ":")))


class MessageArchive:
    def __init__(
        self,
        bucket: str,
        chats_table: str,
        messages_table: str,
        ddb: Any | None = None,
        s3: Any | None = None,
    ) -> None:
        self.bucket = bucket
        self.chats_table = chats_table
        self.messages_table = messages_table
        self.ddb = ddb or client("dynamodb")
        self.s3 = s3 or client("s3")
        self._cache: OrderedDict[str, list[Stored]] = OrderedDict()
        self._lock = threading.Lock()

    # --- the archiver's side ----------------------------------------------------------------------

    def due_page(
        self, shard: str, cutoff_ms: int, limit: int, start: dict[str, Any] | None = None
    ) -> tuple[list[str], dict[str, Any] | None]:
        """One page (up to `limit`) of a shard's chats with an item in the messages table older
        than `cutoff_ms` (by META's `hotSince`, through the sparse archiveDue index: no scan),
        oldest first, and where the next page starts (None: the shard is done)."""
        kwargs: dict[str, Any] = {
            "TableName": self.chats_table,
            "IndexName": "archiveDue",
            "KeyConditionExpression": "archiveShard = :s AND hotSince < :t",
            "ExpressionAttributeValues": {":s": av(shard), ":t": av(cutoff_ms)},
            "Limit": limit,
        }
        if start is not None:
            kwargs["ExclusiveStartKey"] = start
        resp = self.ddb.query(**kwargs)
        return [str(item["chatId"]["S"]) for item in resp["Items"]], resp.get("LastEvaluatedKey")

    def put_range(self, chat_id: str, items: Sequence[Stored]) -> ArchiveRange:
        """Write the object, then read it back and compare: returns only once it is durably there
        as written (S3 acknowledges a PUT once stored redundantly; reads are strongly consistent)."""
        data, raw_size = encode(chat_id, items)
        key = object_key(chat_id, items[0].seq, items[-1].seq)
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType="application/json",
            ContentEncoding="gzip",
            ServerSideEncryption="AES256",
        )
        back = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        if back != data or decode(back) != list(items):
            raise ArchiveMismatch(f"s3://{self.bucket}/{key} read back differs from what was written")
        return ArchiveRange(chat_id, items[0].seq, items[-1].seq, key, len(items), len(data), raw_size)

    def commit(self, archived: ArchiveRange, previous_through: int, now_ms: int) -> None:
        """The range item and META's `archivedThrough` in one transaction, conditional on
        `archivedThrough` still being `previous_through` (ArchiveRaced otherwise): from here on
        readers take these seqs from the archive."""
        condition = "archivedThrough = :prev"
        if previous_through == 0:
            condition = f"attribute_not_exists(archivedThrough) OR {condition}"
        range_item = {
            "chatId": archived.chat_id,
            "sk": range_sk(archived.last_seq),
            "firstSeq": archived.first_seq,
            "lastSeq": archived.last_seq,
            "key": archived.key,
            "count": archived.count,
            "size": archived.size,
            "archivedAt": now_ms,
        }
        try:
            self.ddb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self.chats_table, "Item": to_item(range_item)}},
                    {
                        "Update": {
                            "TableName": self.chats_table,
                            "Key": {"chatId": av(archived.chat_id), "sk": av(META)},
                            "UpdateExpression": "SET archivedThrough = :last, archivedAt = :now",
                            "ConditionExpression": f"({condition}) AND headSeq >= :last",
                            "ExpressionAttributeValues": {
                                ":last": av(archived.last_seq),
                                ":prev": av(previous_through),
                                ":now": av(now_ms),
                            },
                        }
                    },
                ]
            )
        except ClientError as exc:
            codes = cancellation_codes(exc)
            if codes and "ConditionalCheckFailed" in codes:
                raise ArchiveRaced(archived.chat_id) from exc
            raise

    def delete_through(self, chat_id: str, through: int, after: int = 0) -> int:
        """Delete the messages table's items with after < seq <= through (all archived: only ever
        called with `through` <= a committed `archivedThrough`). Returns how many there were."""
        if through <= after:
            return 0
        kwargs: dict[str, Any] = {
            "TableName": self.messages_table,
            "KeyConditionExpression": "chatId = :c AND seq BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":c": av(chat_id), ":lo": av(after + 1), ":hi": av(through)},
            "ProjectionExpression": "chatId, seq",
            "ConsistentRead": True,
        }
        deleted = 0
        while True:
            resp = self.ddb.query(**kwargs)
            keys = resp["Items"]
            batch_write(self.ddb, self.messages_table, [{"DeleteRequest": {"Key": k}} for k in keys])
            deleted += len(keys)
            if "LastEvaluatedKey" not in resp:
                return deleted
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def settle_hot_since(self, chat_id: str, through: int, now_ms: int) -> None:
        """Move META's `hotSince` to the time of the chat's oldest item left in the messages table
        (the index then lists the chat when that one is due), or remove it when none is left."""
        resp = self.ddb.query(
            TableName=self.messages_table,
            KeyConditionExpression="chatId = :c AND seq > :s",
            ExpressionAttributeValues={":c": av(chat_id), ":s": av(through)},
            ProjectionExpression="createdAt",
            Limit=1,
            ConsistentRead=True,
        )
        key = {"chatId": av(chat_id), "sk": av(META)}
        if resp["Items"]:
            since = epoch_ms(str(resp["Items"][0]["createdAt"]["S"]))
            self.ddb.update_item(
                TableName=self.chats_table,
                Key=key,
                UpdateExpression="SET hotSince = :t",
                ExpressionAttributeValues={":t": av(since)},
            )
            return
        try:  # nothing hot: unlisted, unless a seq was reserved since (its message is on its way)
            self.ddb.update_item(
                TableName=self.chats_table,
                Key=key,
                UpdateExpression="REMOVE hotSince",
                ConditionExpression="headSeq <= :s",
                ExpressionAttributeValues={":s": av(through)},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            self.ddb.update_item(
                TableName=self.chats_table,
                Key=key,
                UpdateExpression="SET hotSince = :t",
                ExpressionAttributeValues={":t": av(now_ms)},
            )

    # --- readers ---------------------------------------------------------------------------------

    def ranges(self, chat_id: str, from_seq: int) -> Iterator[ArchiveRange]:
        """The committed ranges whose last seq is >= from_seq, ascending."""
        kwargs: dict[str, Any] = {
            "TableName": self.chats_table,
            "KeyConditionExpression": "chatId = :c AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":c": av(chat_id),
                ":lo": av(range_sk(from_seq)),
                ":hi": av(range_sk(MAX_SEQ)),
            },
            "ConsistentRead": True,
            "Limit": 4,
        }
        while True:
            resp = self.ddb.query(**kwargs)
            for item in resp["Items"]:
                v = from_item(item)
                yield ArchiveRange(
                    chat_id, int(v["firstSeq"]), int(v["lastSeq"]), v["key"], int(v["count"]), int(v["size"])
                )
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def read(self, archived: ArchiveRange) -> list[Stored]:
        """A range's items (immutable once committed: kept decoded in the warm function)."""
        with self._lock:
            if archived.key in self._cache:
                self._cache.move_to_end(archived.key)
                return self._cache[archived.key]
        data = self.s3.get_object(Bucket=self.bucket, Key=archived.key)["Body"].read()
        items = decode(data)
        with self._lock:
            self._cache[archived.key] = items
            while len(self._cache) > CACHED_RANGES:
                self._cache.popitem(last=False)
        return items

    def after(self, chat_id: str, cursor: int, limit: int, up_to: int) -> list[Stored]:
        """Up to `limit` archived items with cursor < seq <= up_to, ascending and gapless (the
        archive holds every seq up to `archivedThrough`: a missing one is an error, never skipped)."""
        found: list[Stored] = []
        expected = cursor + 1
        if limit <= 0 or up_to < expected:
            return found
        for archived in self.ranges(chat_id, expected):
            for item in self.read(archived):
                if item.seq < expected:
                    continue
                if item.seq > up_to or len(found) == limit:
                    return found
                if item.seq != expected:
                    raise RuntimeError(f"archive of {chat_id} lacks seq {expected}")
                found.append(item)
                expected += 1
            if expected > up_to or len(found) == limit:
                return found
        raise RuntimeError(f"archive of {chat_id} ends before seq {expected} (up to {up_to})")
