"""DynamoDB reads and writes that take more than one call, followed until everything is done.

Shared by every store: a batch call may do part of its work and return the rest (throttling),
which must be sent again, not dropped; a Query answers a page at a time.
- Writes: boto3's batch writer (what a Table resource's `batch_writer()` returns), on the
  store's own client: 25 requests a call, unprocessed items sent again until all are written.
  Each call that writes nothing is a throttling error, which botocore retries with its backoff.
- Reads by key: BatchGetItem, following UnprocessedKeys after a backoff, for a bounded number of
  rounds (boto3 has no batch reader).
- Queries: boto3's paginator, following LastEvaluatedKey.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

from boto3.dynamodb.table import BatchWriter

from chat_backend.backoff import Backoff

BATCH_GET_MAX_KEYS = 100
BATCH_WRITE_MAX_ITEMS = 25
UNPROCESSED_MAX_ROUNDS = 8
UNPROCESSED_BACKOFF = Backoff(first_s=0.02, max_s=1.0)  # unprocessed keys mean throttling


def batch_write(ddb: Any, table: str, requests: list[dict[str, Any]]) -> None:
    """Every request (a PutRequest or a DeleteRequest) written, 25 per BatchWriteItem. No
    conditions and no order: a write that needs either is a transaction or a single write."""
    with BatchWriter(table, ddb, flush_amount=BATCH_WRITE_MAX_ITEMS) as writer:
        for request in requests:
            if "PutRequest" in request:
                writer.put_item(Item=request["PutRequest"]["Item"])
            else:
                writer.delete_item(Key=request["DeleteRequest"]["Key"])


def batch_get(
    ddb: Any, table: str, request: dict[str, Any], pool: Executor | None = None
) -> list[dict[str, Any]]:
    """The items of the request's keys that exist (any number of keys: 100 per BatchGetItem, the
    calls run on `pool` when given and there are several), following UnprocessedKeys."""
    keys = request["Keys"]
    chunks = [keys[start : start + BATCH_GET_MAX_KEYS] for start in range(0, len(keys), BATCH_GET_MAX_KEYS)]

    def read(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return batch_get_tables(ddb, {table: {**request, "Keys": chunk}})[table]

    found = pool.map(read, chunks) if pool is not None and len(chunks) > 1 else map(read, chunks)
    return [item for items in found for item in items]


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
        UNPROCESSED_BACKOFF.pause(attempt)
    raise RuntimeError(f"{sorted(requests)}: keys still unprocessed after {UNPROCESSED_MAX_ROUNDS} rounds")


def query_items(ddb: Any, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every item the Query finds, page after page (read lazily: stop early, read less)."""
    for page in ddb.get_paginator("query").paginate(**request):
        yield from page["Items"]
