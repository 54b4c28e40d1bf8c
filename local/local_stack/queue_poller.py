"""The SQS event source of a function, with Lambda's semantics: concurrent receivers; records
the function reports failed stay on the queue and come back (FIFO: their group is held
meanwhile, by SQS itself); after maxReceiveCount SQS redrives them to the DLQ. Successes are
deleted.

With the aws timing profile (local_stack/timing.py) a batch is handed over no earlier than its
newest message's SentTimestamp plus a pickup delay, while the receivers go on receiving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from chat_backend import wiring
from local_stack.invoker import Invoker
from local_stack.polling import ERROR_PAUSE_S, BatchTarget, PollerThreads
from local_stack.timing import TimingProfile, fast_profile

log = logging.getLogger("local_stack.poller")


@dataclass(eq=False)
class QueuePoller:
    """The poller of one function's queue trigger: `concurrency` receivers, each long-polling
    `wait_time_s` at a time."""

    invoker: Invoker
    function: wiring.Function
    trigger: wiring.QueueTrigger
    sqs: Any
    queue_url: str
    concurrency: int = 4
    wait_time_s: int = 1
    timing: TimingProfile = field(default_factory=fast_profile)

    def __post_init__(self) -> None:
        self.target = BatchTarget(self.invoker, self.function)
        self.queue_arn = f"arn:aws:sqs:us-east-1:000000000000:{self.queue_url.rsplit('/', 1)[-1]}"
        # One thread per receiver (each long-polls) plus one to delete and release messages; with
        # the aws timing, receivers go on receiving while earlier batches settle: one more each.
        threads = self.concurrency + 1 + (self.concurrency if self.timing.enabled else 0)
        self.io = PollerThreads(threads, f"queue-{self.trigger.queue}")
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        if not self.timing.enabled:
            await asyncio.gather(*(self._receiver() for _ in range(self.concurrency)))
            return
        # aws: batches wait out their pickup delay apart from the receivers. At most `concurrency`
        # are in the function at once (the trigger's cap), and twice that received and unsettled.
        invoking = asyncio.Semaphore(self.concurrency)
        unsettled = asyncio.Semaphore(2 * self.concurrency)
        queue = wiring.queue(self.trigger.queue)
        try:
            await asyncio.gather(
                *(self._timed_receiver(queue, invoking, unsettled) for _ in range(self.concurrency))
            )
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def _receiver(self) -> None:
        while True:
            try:
                messages = await self.io.run(self._receive)
            except Exception as exc:
                log.warning("receive from %s failed: %r", self.queue_url, exc)
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            if messages:
                await self._invoke(messages)

    async def _timed_receiver(
        self, queue: wiring.Queue, invoking: asyncio.Semaphore, unsettled: asyncio.Semaphore
    ) -> None:
        while True:
            await unsettled.acquire()
            try:
                messages = await self.io.run(self._receive)
            except Exception as exc:
                unsettled.release()
                log.warning("receive from %s failed: %r", self.queue_url, exc)
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            if not messages:
                unsettled.release()
                continue
            ready_at = self._ready_at(messages, queue, received_at=time.time())
            task = asyncio.create_task(self._deliver(messages, ready_at, invoking, unsettled))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _ready_at(self, messages: list[dict[str, Any]], queue: wiring.Queue, received_at: float) -> float:
        """When Lambda would hand this batch over (epoch s): a pickup delay after its newest
        message became receivable (SentTimestamp + the queue's delay; a message received again
        after its visibility timeout counts from now)."""
        visible_since = []
        for message in messages:
            attributes = message.get("Attributes", {})
            since = float(attributes.get("SentTimestamp", received_at * 1000)) / 1000 + queue.delay_s
            if int(attributes.get("ApproximateReceiveCount", "1")) > 1:
                since = max(since, received_at)
            visible_since.append(since)
        return max(visible_since) + self.timing.sqs_pickup_s(queue.fifo)

    async def _deliver(
        self,
        messages: list[dict[str, Any]],
        ready_at: float,
        invoking: asyncio.Semaphore,
        unsettled: asyncio.Semaphore,
    ) -> None:
        try:
            if (wait_s := ready_at - time.time()) > 0:
                await asyncio.sleep(wait_s)
            async with invoking:
                await self._invoke(messages)
        except Exception as exc:  # settling failed: SQS redelivers after the visibility timeout
            log.warning("queue %s: batch not settled: %r", self.trigger.queue, exc)
        finally:
            unsettled.release()

    def _receive(self) -> list[dict[str, Any]]:
        resp = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.trigger.batch_size,
            WaitTimeSeconds=self.wait_time_s,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(resp.get("Messages", []))

    def _lambda_record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": "us-east-1",
        }

    async def _invoke(self, messages: list[dict[str, Any]]) -> None:
        records = [self._lambda_record(m) for m in messages]
        source = f"queue {self.trigger.queue} ({len(records)} messages)"
        try:
            failed = await self.target.failed_ids(records, source)
        except Exception:
            failed = {r["messageId"] for r in records}
        done = [m for m in messages if m["MessageId"] not in failed]
        retry = [m for m in messages if m["MessageId"] in failed]
        await self.io.run(lambda: self._settle(done, retry))

    def _settle(self, done: list[dict[str, Any]], retry: list[dict[str, Any]]) -> None:
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        if retry:
            # Lambda leaves failed messages to their visibility timeout; a short one keeps local
            # retries quick while SQS still holds the FIFO group.
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 1}
                    for i, m in enumerate(retry)
                ],
            )
