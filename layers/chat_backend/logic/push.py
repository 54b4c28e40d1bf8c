"""Pushing one frame to many connections, with no head-of-line blocking.

Every recipient is posted to in parallel and on its own: a 410 removes that one stale connection
record; any other failure (throttled, 5xx, timeout) hands that recipient alone to the delivery
queue with a growing delay, and after `max_attempts` pushes it is dropped (its device finds the
frame by sync: PONG `heads` tells a connected device within a heartbeat). Nobody else waits for
it, and nothing later queues behind it. Push is a latency optimisation over the store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import Enum

from chat_backend.backoff import Backoff
from chat_backend.dal.connection_poster import ConnectionPoster
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import MAX_DELAY_S, DeliveryQueue
from chat_backend.errors import ConnectionGone
from chat_backend.logic.audience import Devices, recipients_of
from chat_backend.models.common import iso_at
from chat_backend.models.queue_payloads import DeliveryEnvelope, PresenceGuard, Recipient

# How long after its registration a connection may still be in its $connect (API Gateway refuses
# posts to it with 410 until $connect returns; ours finish in well under a second).
CONNECTING_S = 10.0
RECIPIENTS_PER_ENVELOPE = 100  # ~17 KB of recipients beside a frame of at most 128 KiB


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # pushes per recipient, the first included
    base_delay_s: int = 1  # before the first retry; doubles each time

    def delay_s(self, attempt: int) -> int:
        """The wait before push number `attempt + 1` (attempt >= 1 pushes already failed)."""
        return int(Backoff(self.base_delay_s, MAX_DELAY_S, jitter=False).delay_s(attempt - 1))


class Outcome(Enum):
    PUSHED = "pushed"
    GONE = "gone"
    FAILED = "failed"


@dataclass(frozen=True)
class PushResult:
    pushed: int = 0
    gone: int = 0
    retried: int = 0  # failed now, queued to be pushed again
    dropped: int = 0  # failed for the last time (or no longer worth pushing): left to sync
    unqueued: int = 0  # failed, and their retry could not be queued either (SQS refused)
    gone_connections: frozenset[str] = frozenset()  # connection ids that turned out gone (410)

    def __add__(self, other: PushResult) -> PushResult:
        return PushResult(
            self.pushed + other.pushed,
            self.gone + other.gone,
            self.retried + other.retried,
            self.dropped + other.dropped,
            self.unqueued + other.unqueued,
            self.gone_connections | other.gone_connections,
        )


@dataclass(frozen=True)
class Pusher:
    """What pushing needs: the @connections API, the registry (for 410s), the delivery queue
    (for retries) and a pool for parallel posts."""

    poster: ConnectionPoster
    registry: ConnectionRegistry
    queue: DeliveryQueue
    pool: Executor
    retry: RetryPolicy = RetryPolicy()

    def push(
        self,
        frame: str,
        recipients: Sequence[Recipient],
        attempt: int = 0,
        presence: PresenceGuard | None = None,
    ) -> PushResult:
        """Post `frame` to every recipient now (`attempt` pushes of it were made before). Never
        raises for a recipient: what could not even be queued for a retry is counted `unqueued`
        (a queue consumer fails its record then, so SQS retries it; the others leave it to sync)."""
        if not recipients:
            return PushResult()
        if len(recipients) == 1:  # the common 1:1 case: no thread hop
            outcomes = [self._post(frame, recipients[0])]
        else:
            outcomes = list(self.pool.map(lambda r: self._post(frame, r), recipients))
        failed = [r for r, o in zip(recipients, outcomes, strict=True) if o is Outcome.FAILED]
        gone = frozenset(
            r.connection_id for r, o in zip(recipients, outcomes, strict=True) if o is Outcome.GONE
        )
        result = PushResult(
            pushed=outcomes.count(Outcome.PUSHED),
            gone=outcomes.count(Outcome.GONE),
            dropped=len(failed),
            gone_connections=gone,
        )
        if failed and attempt + 1 < self.retry.max_attempts:
            try:
                self.queue.enqueue(
                    envelopes(frame, failed, attempt + 1, presence), delay_s=self.retry.delay_s(attempt + 1)
                )
            except Exception:  # the push is lost, never the answer to the caller
                return PushResult(result.pushed, result.gone, unqueued=len(failed), gone_connections=gone)
            result = PushResult(result.pushed, result.gone, retried=len(failed), gone_connections=gone)
        return result

    def _post(self, frame: str, recipient: Recipient) -> Outcome:
        try:
            self.poster.post(recipient.connection_id, frame)
        except ConnectionGone:
            # A connection still in its $connect answers 410 too: one registered within
            # CONNECTING_S is retried (through the delivery queue), not forgotten.
            before = iso_at(time.time() - CONNECTING_S)
            try:
                gone = self.registry.unregister_gone(
                    recipient.user_id, recipient.device_id, recipient.connection_id, before
                )
            except Exception:
                return Outcome.GONE  # a stale record left behind only costs a 410 later
            return Outcome.GONE if gone else Outcome.FAILED
        except Exception:
            return Outcome.FAILED
        return Outcome.PUSHED


def envelopes(
    frame: str, recipients: Sequence[Recipient], attempt: int = 0, presence: PresenceGuard | None = None
) -> list[DeliveryEnvelope]:
    """The recipients in envelopes of RECIPIENTS_PER_ENVELOPE, each with the whole frame."""
    return [
        DeliveryEnvelope(
            frame=frame,
            recipients=list(recipients[start : start + RECIPIENTS_PER_ENVELOPE]),
            attempt=attempt,
            presence=presence,
        )
        for start in range(0, len(recipients), RECIPIENTS_PER_ENVELOPE)
    ]


def push_to_members(
    pusher: Pusher, frame: str, members: Sequence[str], sender: str | None, sender_device: str | None
) -> PushResult:
    """`frame` to every connected device of `members` but the sending device."""
    return push_to_connected(pusher, frame, members, sender, sender_device)[0]


def push_to_connected(
    pusher: Pusher, frame: str, members: Sequence[str], sender: str | None, sender_device: str | None
) -> tuple[PushResult, Devices]:
    """The push, and the connected devices it found. The connections are read consistently, after
    whatever the frame announces was stored: a device that registers later syncs on connect and
    finds it there."""
    devices = pusher.registry.devices_of(list(members), pusher.pool, consistent=True)
    return pusher.push(frame, recipients_of(members, devices, sender, sender_device)), devices
