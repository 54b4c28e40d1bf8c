"""The delivery queue (SQS FIFO): envelopes of one frame and many recipients."""

from __future__ import annotations

from typing import Any

from chat_backend.dal.aws import client
from chat_backend.models import DeliveryEnvelope

SEND_BATCH_MAX = 10


class DeliveryQueue:
    def __init__(self, queue_url: str, sqs: Any | None = None) -> None:
        self.queue_url = queue_url
        self.sqs = sqs or client("sqs")

    def enqueue(self, envelopes: list[tuple[str, str, DeliveryEnvelope]]) -> None:
        """(group id, dedup id, envelope) triples, in order; FIFO keeps order per group."""
        for start in range(0, len(envelopes), SEND_BATCH_MAX):
            chunk = envelopes[start : start + SEND_BATCH_MAX]
            resp = self.sqs.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": envelope.model_dump_json(),
                        "MessageGroupId": group_id,
                        "MessageDeduplicationId": dedup_id,
                    }
                    for i, (group_id, dedup_id, envelope) in enumerate(chunk)
                ],
            )
            if resp.get("Failed"):
                # Fail the stream record: it is retried, and FIFO dedup ids drop what did go through.
                raise RuntimeError(f"SQS refused {len(resp['Failed'])} envelopes: {resp['Failed'][0]}")
