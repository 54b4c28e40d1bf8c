"""The shards of a stream as its poller reads them: each shard's reading state, which shards may
be read (a child only once its parent is drained, to keep each item's order), and their pacing.

Pacing, by timing profile (local_stack/timing.py): fast reads a shard's next batch once the last
is handed over, and polls an idle stream less and less often; aws reads each shard every 250 ms
and hands a record to the function a propagation delay after the poller first saw it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from local_stack.stream_records import sequence_number
from local_stack.timing import TimingProfile

FAST_IDLE_MAX_S = 0.1
TRIM_HORIZON = {"ShardIteratorType": "TRIM_HORIZON"}
LATEST = {"ShardIteratorType": "LATEST"}


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


def readable(shards: dict[str, ShardState]) -> list[ShardState]:
    """Shards with records to come, each only once its parent is drained (order per item)."""
    drained = {s.shard_id for s in shards.values() if s.finished and not s.pending}
    return [
        s
        for s in shards.values()
        if s.shard_id not in drained and (s.parent_id in drained or s.parent_id not in shards)
    ]


def _now() -> float:
    return asyncio.get_running_loop().time()


class ShardPacing:
    """When a stream's shards are read, when their records may be handed over, and how long the
    poller sleeps when nothing moved."""

    def __init__(self, timing: TimingProfile, batch_size: int, idle_sleep_s: float) -> None:
        self.timing = timing
        self.batch_size = batch_size
        self.base_idle_sleep_s = idle_sleep_s
        self.idle_polls = 0  # fast profile: empty polls in a row (the idle sleep doubles with them)

    def polled(self, progressed: bool) -> None:
        self.idle_polls = 0 if progressed else self.idle_polls + 1

    def may_read(self, shard: ShardState) -> bool:
        if shard.finished:
            return False
        if not self.timing.enabled:
            return not shard.pending  # read the next batch once this one is done
        # aws: Lambda reads each shard 4 times a second, and on while records propagate.
        due = _now() - shard.last_read >= self.timing.stream_poll_interval_s
        return due and len(shard.pending) < self.batch_size

    def arrive(self, shard: ShardState, records: list[dict[str, Any]]) -> None:
        if self.timing.enabled:
            # DynamoDB Local's ApproximateCreationDateTime is whole minutes, so the delay counts from
            # when the poller first sees a record (the poll wait is then already behind it).
            now = _now()
            waiting = {sequence_number(r) for r in shard.pending}
            shard.visible_at = {k: t for k, t in shard.visible_at.items() if k in waiting}
            for record in records:
                shard.last_visible_at = max(shard.last_visible_at, now + self.timing.stream_propagation_s())
                shard.visible_at[sequence_number(record)] = shard.last_visible_at
        shard.pending.extend(records)

    def visible(self, shard: ShardState) -> int:
        """How many of the pending records (a prefix) the function may be handed now."""
        if not self.timing.enabled:
            return len(shard.pending)
        now = _now()
        count = 0
        for record in shard.pending:
            if shard.visible_at.get(sequence_number(record), 0.0) > now:
                break
            count += 1
        return count

    def idle_sleep_s(self, shards: list[ShardState]) -> float:
        """How long to sleep after a poll of these (readable) shards moved nothing."""
        if not self.timing.enabled:
            # Fast: poll again at once while records flow, then back off to FAST_IDLE_MAX_S when
            # idle (an idle stream costs next to nothing; the first record after a lull waits a
            # little, still far less than AWS's 250 ms).
            return min(FAST_IDLE_MAX_S, self.base_idle_sleep_s * 2 ** min(self.idle_polls - 1, 8))
        # aws: until a shard is due for a read or its first pending record becomes visible.
        interval = self.timing.stream_poll_interval_s
        now = _now()
        wake = now + interval
        for shard in shards:
            if shard.pending:
                wake = min(wake, shard.visible_at.get(sequence_number(shard.pending[0]), now))
            if not shard.finished and len(shard.pending) < self.batch_size:
                wake = min(wake, shard.last_read + interval)
        return max(0.001, wake - now)
