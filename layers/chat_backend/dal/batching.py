"""DynamoDB's batch calls, following UnprocessedKeys / UnprocessedItems until everything is done.

Shared by every store: a batch call may do part of its work and return the rest (throttling),
which a caller must send again after a backoff, not drop.
"""

from __future__ import annotations

import random
import time
from typing import Any

BATCH_GET_MAX_KEYS = 100
BATCH_WRITE_MAX_ITEMS = 25
UNPROCESSED_MAX_ROUNDS = 8


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
