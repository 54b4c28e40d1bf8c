"""The DynamoDB Streams event source of a function, with Lambda's semantics: one sequential reader
per shard (parents before children, stream_shards.py); batches up to the trigger's size, records
the trigger's filter does not match dropped unseen; `batchItemFailures` checkpoints before the
first failed record and retries from there; a function error bisects the batch; after
`max_retries` the records are dropped to the on-failure log (on AWS: the on-failure destination).

With the aws timing profile (local_stack/timing.py) a shard is read every 250 ms and each record
reaches the function a propagation delay after the poller first sees it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from chat_backend import wiring
from local_stack.event_filter import matches
from local_stack.invoker import Invoker
from local_stack.polling import ERROR_PAUSE_S, BatchTarget, PollerThreads
from local_stack.storage import CheckpointFile
from local_stack.stream_records import lambda_record, sequence_number
from local_stack.stream_shards import LATEST, TRIM_HORIZON, ShardPacing, ShardState, readable
from local_stack.timing import TimingProfile, fast_profile

log = logging.getLogger("local_stack.poller")


@dataclass(eq=False)
class StreamPoller:
    """The poller of one function's stream trigger. `checkpoints`: where each shard's checkpoint
    is kept across runs (None: in memory only). `start_at_latest`: shards there at start with no
    checkpoint are read from LATEST (the table held data before this run; its old records were
    handled by an earlier one), not TRIM_HORIZON; shards that appear later are read from
    TRIM_HORIZON."""

    invoker: Invoker
    function: wiring.Function
    trigger: wiring.StreamTrigger
    ddb: Any
    streams: Any
    idle_sleep_s: float = 0.01
    timing: TimingProfile = field(default_factory=fast_profile)
    checkpoints: CheckpointFile | None = None
    start_at_latest: bool = False

    def __post_init__(self) -> None:
        self.target = BatchTarget(self.invoker, self.function)
        self.pacing = ShardPacing(self.timing, self.trigger.batch_size, self.idle_sleep_s)
        self.shards: dict[str, ShardState] = {}
        self.stream_arn = ""
        self.io = PollerThreads(1, f"stream-{self.trigger.table}")
        self._prepared = False

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
                if loop.time() - last_describe > 1.0 or not readable(self.shards):
                    await self.io.run(self._discover_shards)
                    last_describe = loop.time()
                for shard in readable(self.shards):
                    progressed |= await self._poll(shard)
            except Exception as exc:  # the emulator hiccuped: keep polling, as Lambda would
                log.warning("stream %s: poll failed: %r", self.trigger.table, exc)
                await asyncio.sleep(ERROR_PAUSE_S)
            self.pacing.polled(progressed)
            if not progressed:
                await asyncio.sleep(self.pacing.idle_sleep_s(readable(self.shards)))

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

    async def _poll(self, shard: ShardState) -> bool:
        if self.pacing.may_read(shard):
            shard.last_read = asyncio.get_running_loop().time()
            records = await self.io.run(lambda: self._read(shard))
            if records:
                self.pacing.arrive(shard, records)
        if not shard.pending or not self.pacing.visible(shard):
            return False
        await self._invoke(shard)
        return True

    # --- reading ---------------------------------------------------------------------------------

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
                first = sequence_number(records[0])
                shard.start = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": first}
            shard.last_sequence_number = sequence_number(records[-1])
        # Lambda drops what the trigger's filter does not match, without invoking the function.
        lambda_records = [lambda_record(r, self.stream_arn) for r in records]
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

    # --- invoking and checkpointing --------------------------------------------------------------

    async def _invoke(self, shard: ShardState) -> None:
        size = min(shard.batch_len or len(shard.pending), self.pacing.visible(shard), self.trigger.batch_size)
        batch = shard.pending[:size]
        source = f"stream {self.trigger.table} ({len(batch)} records)"
        try:
            failed_ids = await self.target.failed_ids(batch, source)
        except Exception:
            if self.trigger.bisect_on_error and size > 1:
                shard.batch_len = size // 2  # retry the first half alone, then the rest
                return
            failed_at = 0
        else:
            if not failed_ids:
                self._commit(shard, size)
                shard.attempts, shard.batch_len = 0, 0
                return
            # Checkpoint before the first failed record; retry from there.
            failed_at = next((i for i, r in enumerate(batch) if sequence_number(r) in failed_ids), 0)
        self._commit(shard, failed_at)
        shard.batch_len = max(0, size - failed_at)
        shard.attempts += 1
        if shard.attempts > self.trigger.max_retries:
            dropped = [sequence_number(r) for r in shard.pending[: shard.batch_len or None]]
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
            shard.committed = sequence_number(shard.pending[done - 1])
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
