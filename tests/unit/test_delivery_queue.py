"""SendMessageBatch cutting (dal/delivery_queue.py `batches_by_bytes`) and the standard delivery
queue: at most 10 entries and 1 MiB of bodies per call, nothing over 1 MiB sent at all."""

from __future__ import annotations

from typing import Any

import pytest

from chat_backend.dal.delivery_queue import (
    MAX_DELAY_S,
    SEND_BATCH_MAX,
    SQS_MAX_BYTES,
    DeliveryQueue,
    batches_by_bytes,
)
from chat_backend.models.queue_payloads import DeliveryEnvelope, Recipient


def entries(*sizes: int) -> list[dict[str, Any]]:
    """Entries whose bodies are `size` bytes each, named by their position ("0", "1", ...)."""
    return [{"MessageBody": str(n).ljust(size, "x"), "DelaySeconds": 0} for n, size in enumerate(sizes)]


def positions(batch: list[dict[str, Any]]) -> list[int]:
    return [int(e["MessageBody"].rstrip("x")) for e in batch]


def test_small_entries_go_ten_per_batch_in_order_with_ids_unique_in_their_batch() -> None:
    # Given 25 small entries
    # When they are cut into batches
    batches = list(batches_by_bytes(entries(*[10] * 25)))
    # Then they go 10, 10, 5, in order, each batch with ids "0".."n-1" and the entries' fields kept
    assert [positions(b) for b in batches] == [list(range(10)), list(range(10, 20)), list(range(20, 25))]
    assert [[e["Id"] for e in b] for b in batches] == [[str(i) for i in range(len(b))] for b in batches]
    assert all(e["DelaySeconds"] == 0 for b in batches for e in b)
    assert SEND_BATCH_MAX == 10


def test_large_entries_are_cut_by_bytes_before_the_count_limit() -> None:
    # Given seven entries of 300 KB (four would pass 1 MiB)
    # When they are cut into batches
    batches = list(batches_by_bytes(entries(*[300_000] * 7)))
    # Then they go three per batch, none over 1 MiB
    assert [positions(b) for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(sum(len(e["MessageBody"].encode()) for e in b) <= SQS_MAX_BYTES for b in batches)


def test_a_batch_may_fill_1_mib_exactly_and_not_a_byte_more() -> None:
    # Given two entries of exactly half a MiB, then one of a single byte
    half = SQS_MAX_BYTES // 2
    # When they are cut
    batches = list(batches_by_bytes(entries(half, half, 1)))
    # Then the halves share a batch (1 MiB exactly) and the byte goes in the next
    assert [positions(b) for b in batches] == [[0, 1], [2]]


def test_bytes_are_counted_encoded_not_as_characters() -> None:
    # Given two bodies of 300,000 characters, each 600,000 bytes in UTF-8
    wide = [{"MessageBody": "é" * 300_000}, {"MessageBody": "é" * 300_000}]
    # When they are cut, Then they go in separate batches (1.2 MB together)
    assert [len(b) for b in batches_by_bytes(wide)] == [1, 1]


def test_an_entry_over_1_mib_is_refused_before_anything_is_sent() -> None:
    # Given a small entry, then one over 1 MiB
    # When they are cut, Then the cut fails naming the oversize entry
    with pytest.raises(ValueError, match=f"{SQS_MAX_BYTES + 1} bytes"):
        list(batches_by_bytes(entries(10, SQS_MAX_BYTES + 1)))


def test_nothing_to_send_makes_no_batch() -> None:
    assert list(batches_by_bytes([])) == []


class RecordingSqs:
    def __init__(self, failed: list[dict[str, Any]] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failed = failed or []

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"Successful": [], "Failed": self.failed}


def envelope(n: int) -> DeliveryEnvelope:
    return DeliveryEnvelope(
        frame=f'{{"type":"MESSAGE","seq":{n}}}',
        recipients=[Recipient(user_id="u", device_id="d", connection_id="c")],
    )


def test_a_retry_delay_is_kept_within_what_sqs_allows() -> None:
    # Given the delivery queue
    sqs = RecordingSqs()
    queue = DeliveryQueue("https://sqs.example/q", sqs)
    # When envelopes are enqueued with a 30 s delay, one of an hour, and a negative one
    queue.enqueue([envelope(1)], delay_s=30)
    queue.enqueue([envelope(2)], delay_s=3600)
    queue.enqueue([envelope(3)], delay_s=-5)
    # Then they wait 30 s, 900 s (SQS's longest) and 0 s
    assert [c["Entries"][0]["DelaySeconds"] for c in sqs.calls] == [30, MAX_DELAY_S, 0]
    # And each body is the envelope itself, in the standard queue (no FIFO group)
    assert DeliveryEnvelope.model_validate_json(sqs.calls[0]["Entries"][0]["MessageBody"]) == envelope(1)
    assert "MessageGroupId" not in sqs.calls[0]["Entries"][0]


def test_an_envelope_sqs_refuses_fails_the_enqueue_loudly() -> None:
    # Given SQS refusing an entry of the batch
    sqs = RecordingSqs(failed=[{"Id": "0", "Code": "InternalError", "SenderFault": False}])
    queue = DeliveryQueue("https://sqs.example/q", sqs)
    # When envelopes are enqueued, Then the caller learns it (its retry sends again)
    with pytest.raises(RuntimeError, match="SQS refused 1"):
        queue.enqueue([envelope(1), envelope(2)])
