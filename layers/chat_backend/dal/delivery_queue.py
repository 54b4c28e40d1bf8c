"""SQS FIFO queues: the delivery queue (envelopes of one frame and many recipients) and plain job
queues (the receipt summaries) share one batching sender."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chat_backend.dal.aws import client
from chat_backend.models import DeliveryEnvelope

SEND_BATCH_MAX = 10


@dataclass(frozen=True)
class QueuedMessage:
    group_id: str  # FIFO order holds within a group
    dedup_id: str  # the same id within 5 minutes is dropped by SQS
    body: str


@dataclass(frozen=True)
class Envelope:
    group_id: str  # FIFO order holds within a group
    dedup_id: str  # the same id within 5 minutes is dropped by SQS
    body: DeliveryEnvelope


class FifoQueue:
    def __init__(self, queue_url: str, sqs: Any | None = None) -> None:
        self.queue_url = queue_url
        self.sqs = sqs or client("sqs")

    def send(self, messages: Sequence[QueuedMessage]) -> None:
        """In order, ten per call."""
        for start in range(0, len(messages), SEND_BATCH_MAX):
            chunk = messages[start : start + SEND_BATCH_MAX]
            resp = self.sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": m.body,
                        "MessageGroupId": m.group_id,
                        "MessageDeduplicationId": m.dedup_id,
                    }
                    for i, m in enumerate(chunk)
                ],
            )
            if resp.get("Failed"):
                # Fail the caller: its retry re-sends, and the dedup ids drop what did go through.
                raise RuntimeError(f"SQS refused {len(resp['Failed'])} messages: {resp['Failed'][0]}")


class DeliveryQueue(FifoQueue):
    def enqueue(self, envelopes: Sequence[Envelope]) -> None:
        """In order, ten per call."""
        self.send([QueuedMessage(e.group_id, e.dedup_id, e.body.model_dump_json()) for e in envelopes])
