"""Event-source pollers with Lambda's semantics, for the triggers of the wiring table.

- Streams: one sequential reader per shard (parents before children); batches up to the trigger's
  size; `batchItemFailures` checkpoints before the first failed record and retries from there;
  a function error bisects the batch; after `max_retries` the records are dropped to the
  on-failure log (on AWS: the on-failure destination).
- SQS: concurrent receivers; records the function reports failed stay on the queue and come back
  (FIFO: their group is held meanwhile, by SQS itself); after maxReceiveCount SQS redrives them
  to the DLQ. Successes are deleted.

With the aws timing profile (local_stack/timing.py) a shard is read every 250 ms and each record
reaches the function a propagation delay after the poller first sees it; an SQS batch is handed
over no earlier than its newest message's SentTimestamp plus a pickup delay, while the receivers
go on receiving.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from chat_backend import wiring
from local_stack.event_filter import matches
from local_stack.invoker import Invoker
from local_stack.storage import CheckpointFile
from local_stack.timing import TimingProfile, fast_profile

T = TypeVar("T")
log = logging.getLogger("local_stack.poller")


IMAGE_KEYS = ("Keys", "NewImage", "OldImage")
FAST_IDLE_MAX_S = 0.1
TRIM_HORIZON = {"ShardIteratorType": "TRIM_HORIZON"}
LATEST = {"ShardIteratorType": "LATEST"}


def _json_attribute_values(value: Any) -> Any:
    """Attribute values as Lambda's JSON event carries them: bytes (B, BS) as base64 strings."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _json_attribute_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_attribute_values(v) for v in value]
    return value


@dataclass
class ShardState:
    shard_id: str
    parent_id: str | None
    # Where reading starts while nothing is read: TRIM_HORIZON, or (a shard of a table that held
    # data before this start, with no checkpoint) LATEST, pinned at the first record read.
    start: dict[str, str] = field(default_factory=lambda: dict(TRIM_HORIZON))
    iterator: str | None = None
    last_sequence_number: str | None = None  # the last record read
    committed: str | None = None  # the last record done with (processed, or sent to on-failure)
    pending: list[dict[str, Any]] = field(default_factory=list)
    batch_len: int = 0  # how many of `pending` the next invocation gets (0: all); bisection shrinks it
    attempts: int = 0
    finished: bool = False
    # aws timing only: when the shard was last read (event-loop time), and when each pending
    # record (by SequenceNumber) becomes visible to the function; non-decreasing, to keep order.
    last_read: float = float("-inf")
    visible_at: dict[str, float] = field(default_factory=dict)
    last_visible_at: float = 0.0


class PollerThreads:
    """A poller's own threads for its blocking AWS calls. Long polls hold a thread for up to their
    wait time, so pollers must not share asyncio's default executor (a few threads on a small
    machine): one queue's idle long polls would stall every other poller."""

    def __init__(self, threads: int, name: str) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, call)


class StreamPoller:
    def __init__(
        self,
        invoker: Invoker,
        function: wiring.Function,
        trigger: wiring.StreamTrigger,
        ddb: Any,
        streams: Any,
        idle_sleep_s: float = 0.01,
        timing: TimingProfile | None = None,
        checkpoints: CheckpointFile | None = None,
        start_at_latest: bool = False,
    ) -> None:
        """`checkpoints`: where each shard's checkpoint is kept across runs (None: in memory only).
        `start_at_latest`: shards there at start with no checkpoint are read from LATEST (the
        table held data before this run; its old records were handled by an earlier one), not
        TRIM_HORIZON; shards that appear later are read from TRIM_HORIZON."""
        self.invoker = invoker
        self.function = function
        self.trigger = trigger
        self.ddb = ddb
        self.streams = streams
        self.checkpoints = checkpoints
        self.start_at_latest = start_at_latest
        self._prepared = False
        self.idle_sleep_s = idle_sleep_s
        self._idle_polls = 0  # fast profile: empty polls in a row (the idle sleep doubles with them)
        self.timing = timing or fast_profile()
        self.shards: dict[str, ShardState] = {}
        self.stream_arn = ""
        self.io = PollerThreads(1, f"stream-{trigger.table}")

    async def prepare(self) -> None:
        """Find the stream and where each of its shards resumes. Called before the stack serves,
        so a LATEST position is taken before anything can write."""
        await self.io.run(self._prepare)

    def _prepare(self) -> None:
        if self._prepared:
            return
        table = self.ddb.describe_table(TableName=self.trigger.table)["Table"]
        self.stream_arn = table["LatestStreamArn"]
        self._discover_shards()
        saved = self.checkpoints.load(self.stream_arn) if self.checkpoints else {}
        for shard in self.shards.values():
            if shard.shard_id in saved:
                shard.committed = shard.last_sequence_number = saved[shard.shard_id]
            elif self.start_at_latest:
                shard.start = dict(LATEST)
                shard.iterator = self._iterator(shard)
        if saved:
            log.info("stream %s: resuming %d shards from their checkpoints", self.trigger.table, len(saved))
        self._prepared = True

    async def run(self) -> None:
        await self.prepare()
        last_describe = 0.0
        loop = asyncio.get_running_loop()
        while True:
            progressed = False
            try:
                if loop.time() - last_describe > 1.0 or not self._readable():
                    await self.io.run(self._discover_shards)
                    last_describe = loop.time()
                for shard in self._readable():
                    progressed |= await self._poll(shard)
            except Exception as exc:  # the emulator hiccuped: keep polling, as Lambda would
                log.warning("stream %s: poll failed: %r", self.trigger.table, exc)
                await asyncio.sleep(0.5)
            self._idle_polls = 0 if progressed else self._idle_polls + 1
            if not progressed:
                await asyncio.sleep(self._idle_sleep_s())

    def rewind(self) -> None:
        """After the poller was stopped (restarted): read every shard again from its checkpoint,
        as Lambda does, so a batch that was in flight, or read and not yet handed over, comes
        again (at least once)."""
        for shard in self.shards.values():
            shard.pending, shard.visible_at, shard.batch_len, shard.attempts = [], {}, 0, 0
            shard.iterator, shard.last_sequence_number = None, shard.committed
            shard.finished = False

    def _discover_shards(self) -> None:
        desc = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in desc.get("Shards", []):
            if shard["ShardId"] not in self.shards:
                self.shards[shard["ShardId"]] = ShardState(shard["ShardId"], shard.get("ParentShardId"))

    def _readable(self) -> list[ShardState]:
        """Shards with records to come, each only once its parent is drained (order per item)."""
        drained = {s.shard_id for s in self.shards.values() if s.finished and not s.pending}
        return [
            s
            for s in self.shards.values()
            if s.shard_id not in drained and (s.parent_id in drained or s.parent_id not in self.shards)
        ]

    async def _poll(self, shard: ShardState) -> bool:
        if self._may_read(shard):
            shard.last_read = asyncio.get_running_loop().time()
            records = await self.io.run(lambda: self._read(shard))
            if records:
                self._arrive(shard, records)
        if not shard.pending or not self._visible(shard):
            return False
        await self._invoke(shard)
        return True

    def _may_read(self, shard: ShardState) -> bool:
        if shard.finished:
            return False
        if not self.timing.enabled:
            return not shard.pending  # read the next batch once this one is done
        # aws: Lambda reads each shard 4 times a second, and on while records propagate.
        due = asyncio.get_running_loop().time() - shard.last_read >= self.timing.stream_poll_interval_s
        return due and len(shard.pending) < self.trigger.batch_size

    def _arrive(self, shard: ShardState, records: list[dict[str, Any]]) -> None:
        if self.timing.enabled:
            # DynamoDB Local's ApproximateCreationDateTime is whole minutes, so the delay counts from
            # when the poller first sees a record (the poll wait is then already behind it).
            now = asyncio.get_running_loop().time()
            waiting = {r["dynamodb"]["SequenceNumber"] for r in shard.pending}
            shard.visible_at = {k: t for k, t in shard.visible_at.items() if k in waiting}
            for record in records:
                shard.last_visible_at = max(shard.last_visible_at, now + self.timing.stream_propagation_s())
                shard.visible_at[record["dynamodb"]["SequenceNumber"]] = shard.last_visible_at
        shard.pending.extend(records)

    def _visible(self, shard: ShardState) -> int:
        """How many of the pending records (a prefix) the function may be handed now."""
        if not self.timing.enabled:
            return len(shard.pending)
        now = asyncio.get_running_loop().time()
        count = 0
        for record in shard.pending:
            if shard.visible_at.get(record["dynamodb"]["SequenceNumber"], 0.0) > now:
                break
            count += 1
        return count

    def _idle_sleep_s(self) -> float:
        if not self.timing.enabled:
            # Fast: poll again at once while records flow, then back off to FAST_IDLE_MAX_S when
            # idle (an idle stream costs next to nothing; the first record after a lull waits a
            # little, still far less than AWS's 250 ms).
            return min(FAST_IDLE_MAX_S, self.idle_sleep_s * 2 ** min(self._idle_polls - 1, 8))
        # aws: until a shard is due for a read or its first pending record becomes visible.
        interval = self.timing.stream_poll_interval_s
        now = asyncio.get_running_loop().time()
        wake = now + interval
        for shard in self._readable():
            if shard.pending:
                wake = min(wake, shard.visible_at.get(shard.pending[0]["dynamodb"]["SequenceNumber"], now))
            if not shard.finished and len(shard.pending) < self.trigger.batch_size:
                wake = min(wake, shard.last_read + interval)
        return max(0.001, wake - now)

    def _read(self, shard: ShardState) -> list[dict[str, Any]]:
        if shard.iterator is None:
            shard.iterator = self._iterator(shard)
        try:
            resp = self.streams.get_records(ShardIterator=shard.iterator, Limit=self.trigger.batch_size)
        except ClientError as exc:
            # Iterators expire (15 min), and DynamoDB Local trims a TRIM_HORIZON iterator taken
            # before the shard's first record: resume right after the last record read.
            if exc.response["Error"]["Code"] not in (
                "TrimmedDataAccessException",
                "ExpiredIteratorException",
            ):
                raise
            shard.iterator = self._iterator(shard)
            resp = self.streams.get_records(ShardIterator=shard.iterator, Limit=self.trigger.batch_size)
        shard.iterator = resp.get("NextShardIterator")
        if shard.iterator is None:
            shard.finished = True
        records = resp.get("Records", [])
        if records:
            if shard.start == LATEST:  # a rewind reads again from here, not from a later LATEST
                first = records[0]["dynamodb"]["SequenceNumber"]
                shard.start = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": first}
            shard.last_sequence_number = records[-1]["dynamodb"]["SequenceNumber"]
        # Lambda drops what the trigger's filter does not match, without invoking the function.
        lambda_records = [self._lambda_record(r) for r in records]
        matching = [r for r in lambda_records if matches(self.trigger.filter_pattern, r)]
        if records and not matching and not shard.pending:
            # Nothing to hand over up to here: the checkpoint moves past the skipped records.
            shard.committed = shard.last_sequence_number
            self._save_checkpoints()
        return matching

    def _iterator(self, shard: ShardState) -> str:
        position = shard.start
        if shard.last_sequence_number:
            position = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "SequenceNumber": shard.last_sequence_number,
            }
        try:
            resp = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard.shard_id, **position
            )
        except ClientError as exc:
            # A checkpoint older than the stream's retention (DynamoDB Local answers "Invalid
            # SequenceNumber" for a record no longer held): everything still held is newer.
            code = exc.response["Error"]["Code"]
            if position["ShardIteratorType"] != "AFTER_SEQUENCE_NUMBER" or code not in (
                "TrimmedDataAccessException",
                "ValidationException",
            ):
                raise
            log.warning(
                "stream %s shard %s: checkpoint %s no longer held (%s): reading from TRIM_HORIZON",
                self.trigger.table,
                shard.shard_id,
                shard.last_sequence_number,
                code,
            )
            resp = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard.shard_id, **TRIM_HORIZON
            )
        return str(resp["ShardIterator"])

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        # Lambda hands the function JSON: binary attribute values arrive base64-encoded.
        dynamodb = {
            k: _json_attribute_values(v) if k in IMAGE_KEYS else v for k, v in record["dynamodb"].items()
        }
        created = dynamodb.get("ApproximateCreationDateTime")
        if created is not None and not isinstance(created, int | float):
            dynamodb["ApproximateCreationDateTime"] = created.timestamp()
        return {
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "eventVersion": record.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": record.get("awsRegion", "us-east-1"),
            "dynamodb": dynamodb,
            "eventSourceARN": self.stream_arn,
        }

    async def _invoke(self, shard: ShardState) -> None:
        size = min(shard.batch_len or len(shard.pending), self._visible(shard), self.trigger.batch_size)
        batch = shard.pending[:size]
        source = f"stream {self.trigger.table} ({len(batch)} records)"
        try:
            result = await self.invoker.invoke(self.function.name, {"Records": batch}, source)
        except Exception:
            if self.trigger.bisect_on_error and size > 1:
                shard.batch_len = size // 2  # retry the first half alone, then the rest
                return
            failed_at = 0
        else:
            failed_ids = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures") or []}
            if not failed_ids:
                self._commit(shard, size)
                shard.attempts, shard.batch_len = 0, 0
                return
            # Checkpoint before the first failed record; retry from there.
            failed_at = next(
                (i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed_ids), 0
            )
        self._commit(shard, failed_at)
        shard.batch_len = max(0, size - failed_at)
        shard.attempts += 1
        if shard.attempts > self.trigger.max_retries:
            dropped = [r["dynamodb"]["SequenceNumber"] for r in shard.pending[: shard.batch_len or None]]
            log.error(
                "stream %s: %d records to on-failure after retries: %s",
                self.trigger.table,
                len(dropped),
                dropped,
            )
            self._commit(shard, len(dropped))
            shard.attempts, shard.batch_len = 0, 0
            return
        await asyncio.sleep(min(1.0, 0.05 * 2**shard.attempts))

    def _commit(self, shard: ShardState, done: int) -> None:
        """The first `done` pending records are done with: the checkpoint moves past them."""
        if done > 0:
            shard.committed = shard.pending[done - 1]["dynamodb"]["SequenceNumber"]
            shard.pending = shard.pending[done:]
            self._save_checkpoints()

    def _save_checkpoints(self) -> None:
        if self.checkpoints is None:
            return
        committed = {s.shard_id: s.committed for s in self.shards.values() if s.committed}
        try:
            self.checkpoints.save(self.stream_arn, committed)
        except OSError as exc:  # a full disk loses a checkpoint (records come again), not the poller
            log.warning("stream %s: checkpoint not written: %r", self.trigger.table, exc)


class QueuePoller:
    def __init__(
        self,
        invoker: Invoker,
        function: wiring.Function,
        trigger: wiring.QueueTrigger,
        sqs: Any,
        queue_url: str,
        concurrency: int = 4,
        wait_time_s: int = 1,
        timing: TimingProfile | None = None,
    ) -> None:
        self.invoker = invoker
        self.function = function
        self.trigger = trigger
        self.sqs = sqs
        self.queue_url = queue_url
        self.concurrency = concurrency
        self.wait_time_s = wait_time_s
        self.timing = timing or fast_profile()
        self.queue_arn = f"arn:aws:sqs:us-east-1:000000000000:{queue_url.rsplit('/', 1)[-1]}"
        # One thread per receiver (each long-polls) plus one to delete and release messages; with
        # the aws timing, receivers go on receiving while earlier batches settle: one more each.
        threads = concurrency + 1 + (concurrency if self.timing.enabled else 0)
        self.io = PollerThreads(threads, f"queue-{trigger.queue}")
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
                await asyncio.sleep(0.5)
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
                await asyncio.sleep(0.5)
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
            result = await self.invoker.invoke(self.function.name, {"Records": records}, source)
            failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures") or []}
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
