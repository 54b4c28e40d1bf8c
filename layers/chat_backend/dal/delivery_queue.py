"""The delivery queue (SQS FIFO): envelopes of one frame and many recipients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat_backend.dal.aws import client
from chat_backend.models import DeliveryEnvelope

SEND_BATCH_MAX = 10


@dataclass(frozen=True)
class Envelope:
    group_id: str  # FIFO order holds within a group
    dedup_id: str  # the same id within 5 minutes is dropped by SQS
    body: DeliveryEnvelope


class DeliveryQueue:
    def __init__(self, queue_url: str, sqs: Any | None = None) -> None:
        self.queue_url = queue_url
        self.sqs = sqs or client("sqs")

    def enqueue(self, envelopes: list[Envelope]) -> None:
        """In order, ten per call."""
        for start in range(0, len(envelopes), SEND_BATCH_MAX):
            chunk = envelopes[start : start + SEND_BATCH_MAX]
            resp = self.sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": e.body.model_dump_json(),
                        "MessageGroupId": e.group_id,
                        "MessageDeduplicationId": e.dedup_id,
                    }
                    for i, e in enumerate(chunk)
                ],
            )
            if resp.get("Failed"):
                # Fail the stream batch: it is retried, and the dedup ids drop what did go through.
                raise RuntimeError(f"SQS refused {len(resp['Failed'])} envelopes: {resp['Failed'][0]}")
