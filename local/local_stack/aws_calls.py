"""Counts the AWS API calls the functions make (at the boto3 layer) and the DynamoDB write units
they consume, for `make bench`. Hooks go on the functions' boto3 session, so the emulator's own
plumbing (pollers, bootstrap) is counted apart."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any

WRITE_OPERATIONS = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}


class AwsCallCounter:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.write_units: defaultdict[str, float] = defaultdict(float)
        self.sqs_messages_sent = 0  # SendMessage(Batch) entries: one SQS request can carry ten
        self._lock = threading.Lock()

    def install(self, events: Any) -> None:
        events.register("before-parameter-build.dynamodb", self._ask_for_capacity)
        events.register("after-call", self._count)

    def _ask_for_capacity(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in WRITE_OPERATIONS:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _count(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        key = f"{service}.{model.name}"
        units = 0.0
        if service == "dynamodb" and model.name in WRITE_OPERATIONS:
            capacity = parsed.get("ConsumedCapacity") or []
            for entry in capacity if isinstance(capacity, list) else [capacity]:
                units += float(entry.get("WriteCapacityUnits") or entry.get("CapacityUnits") or 0)
        sqs_messages = len(parsed.get("Successful", [])) if key == "sqs.SendMessageBatch" else 0
        sqs_messages += 1 if key == "sqs.SendMessage" else 0
        with self._lock:
            self.calls[key] += 1
            self.sqs_messages_sent += sqs_messages
            if units:
                self.write_units[key] += units

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self.calls),
                "write_units": dict(self.write_units),
                "sqs_messages_sent": self.sqs_messages_sent,
            }

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.write_units.clear()
            self.sqs_messages_sent = 0
