"""Messages stream -> delivery queue.

The batch is fanned out as a whole (one member read per chat, one connection lookup per 100
users, ten envelopes per SQS call) rather than record by record, which is why this handler does
not use powertools' per-record BatchProcessor. A failure fails the batch: Lambda bisects and
retries it, and the envelopes' dedup ids keep a retry from pushing anything twice.
"""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.dal.chat_store import message_from_image
from chat_backend.logic.fanout import fan_out
from chat_backend.observability import count, logger, metrics, tracer
from chat_backend.services import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=DynamoDBStreamEvent)
def handler(event: DynamoDBStreamEvent, context: LambdaContext) -> dict[str, Any]:
    messages = [
        message_from_image(r.raw_event["dynamodb"]["NewImage"])
        for r in event.records
        if r.event_name == DynamoDBRecordEventName.INSERT
    ]
    s = services()
    envelopes = fan_out(s.store, s.registry, s.queue, messages, s.io_pool, s.member_lists)
    logger.debug("fanned out", extra={"messages": len(messages), "envelopes": envelopes})
    count("MessagesFannedOut", len(messages))
    count("EnvelopesEnqueued", envelopes)
    return {"batchItemFailures": []}
