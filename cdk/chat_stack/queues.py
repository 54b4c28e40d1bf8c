"""SQS queues, one per `wiring.QUEUES` entry, each with its dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from chat_backend import wiring
from chat_stack.nag import acknowledge

# AWS advice for SQS event sources: visibility timeout >= 6 x the consumer's function timeout, so
# messages of a batch still being retried by the poller are not handed out a second time.
VISIBILITY_TIMEOUT_PER_FUNCTION_TIMEOUT = 6
DLQ_RETENTION = Duration.days(14)  # the maximum: time to look at what failed and redrive it


def consumers(queue: wiring.Queue) -> list[wiring.Function]:
    return [
        fn
        for fn in wiring.FUNCTIONS
        if isinstance(fn.trigger, wiring.QueueTrigger) and fn.trigger.queue == queue.name
    ]


def visibility_timeout_s(queue: wiring.Queue) -> int:
    """The wiring's visibility timeout, raised where a consumer's timeout needs more."""
    needed = (VISIBILITY_TIMEOUT_PER_FUNCTION_TIMEOUT * fn.timeout_s for fn in consumers(queue))
    return max([queue.visibility_timeout_s, *needed])


class Queues(Construct):
    """FIFO queues (we send our own deduplication ids), encrypted at rest, TLS only, redriven to a DLQ after
    `max_receive_count` receives."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.dlqs: dict[str, sqs.Queue] = {}  # queue logical name -> its DLQ
        self.by_name: dict[str, sqs.Queue] = {spec.name: self._queue(spec) for spec in wiring.QUEUES}

    def _queue(self, spec: wiring.Queue) -> sqs.Queue:
        fifo = spec.fifo or None
        dedup_by_content = False if spec.fifo else None  # senders give MessageDeduplicationId
        dlq = dead_end_queue(
            self,
            spec.dlq_name,
            retention=DLQ_RETENTION,
            fifo=spec.fifo,
            why="This is a dead-letter queue: messages end here to be inspected and redriven; "
            "an alarm fires on its depth.",
        )
        self.dlqs[spec.name] = dlq
        return sqs.Queue(
            self,
            spec.name,
            visibility_timeout=Duration.seconds(visibility_timeout_s(spec)),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=spec.max_receive_count, queue=dlq),
            fifo=fifo,
            content_based_deduplication=dedup_by_content,
            delivery_delay=Duration.seconds(spec.delay_s) if spec.delay_s else None,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )


def dead_end_queue(
    scope: Construct, construct_id: str, *, retention: Duration, why: str, fifo: bool = False
) -> sqs.Queue:
    """A queue where messages end to be looked at (a DLQ, a stream's failed records): encrypted at
    rest, TLS only, kept `retention`. Nothing consumes it, so it has no DLQ of its own (`why`
    tells cdk-nag's SQS3 so)."""
    queue = sqs.Queue(
        scope,
        construct_id,
        fifo=fifo or None,
        content_based_deduplication=False if fifo else None,  # senders give MessageDeduplicationId
        retention_period=retention,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
    )
    acknowledge(queue, "AwsSolutions-SQS3", why)
    return queue
