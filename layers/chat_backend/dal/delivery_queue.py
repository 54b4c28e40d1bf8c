"""SQS: the delivery queue (standard: envelopes of one frame and many recipients, for large
groups and for retries), job queues (standard: offline members to notify by mobile push, the
archiver's fan-out) and FIFO job queues (receipt summaries, presence settling).

SendMessageBatch takes at most 10 entries and at most 1 MiB in all, and a message is at most
1 MiB (SQS raised both from 256 KiB in 2025; moto enforces the same): batches are cut by bytes,
not only by count, so ten envelopes of 64 KiB ciphertexts (~107 KB each) never fail a batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from chat_backend.dal.aws import client
from chat_backend.models.queue_payloads import DeliveryEnvelope

SEND_BATCH_MAX = 10
SQS_MAX_BYTES = 1024 * 1024  # one message, and one SendMessageBatch request in all
MAX_DELAY_S = 900  # SQS's longest per-message delay


@dataclass(frozen=True)
class QueuedMessage:
    group_id: str  # FIFO order holds within a group
    dedup_id: str  # the same id within 5 minutes is dropped by SQS
    body: str


def batches_by_bytes(
    entries: Sequence[dict[str, Any]], max_entries: int = SEND_BATCH_MAX, max_bytes: int = SQS_MAX_BYTES
) -> Iterator[list[dict[str, Any]]]:
    """SendMessageBatch entries in order, as few batches as the count and byte limits allow."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        body_bytes = len(entry["MessageBody"].encode())
        if body_bytes > max_bytes:
            raise ValueError(f"an SQS message of {body_bytes} bytes is over {max_bytes}")
        if batch and (len(batch) == max_entries or size + body_bytes > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append({**entry, "Id": str(len(batch))})
        size += body_bytes
    if batch:
        yield batch


class _Queue:
    def __init__(self, queue_url: str, sqs: Any | None = None) -> None:
        self.queue_url = queue_url
        self.sqs = sqs or client("sqs")

    def _send(self, entries: Sequence[dict[str, Any]]) -> None:
        for batch in batches_by_bytes(entries):
            resp = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=batch)
            if resp.get("Failed"):
                # Fail the caller: its retry sends again (at-least-once; receivers drop duplicates).
                raise RuntimeError(f"SQS refused {len(resp['Failed'])} messages: {resp['Failed'][0]}")


class FifoQueue(_Queue):
    def send(self, messages: Sequence[QueuedMessage]) -> None:
        """In order."""
        self._send(
            [
                {"MessageBody": m.body, "MessageGroupId": m.group_id, "MessageDeduplicationId": m.dedup_id}
                for m in messages
            ]
        )


class DeliveryQueue(_Queue):
    def enqueue(self, envelopes: Sequence[DeliveryEnvelope], delay_s: int = 0) -> None:
        """Each envelope becomes visible after `delay_s` (a retry's backoff). No order: the seq
        orders messages, and the SDK holds a gap until it fills."""
        delay = min(max(0, delay_s), MAX_DELAY_S)
        self._send([{"MessageBody": e.model_dump_json(), "DelaySeconds": delay} for e in envelopes])


class JobQueue(_Queue):
    def enqueue(self, jobs: Sequence[BaseModel]) -> None:
        """Standard queue, no order: each job stands alone."""
        self._send([{"MessageBody": j.model_dump_json()} for j in jobs])


class NotifyQueue(JobQueue):
    """Offline members to notify by mobile push (NotifyJob)."""


class ArchiveQueue(JobQueue):
    """The archiver's fan-out (ArchiveJob)."""
