"""Messages stream -> delivery queue, for what the send path does not push itself.

The event source mapping's filter passes only items stored with `fanout = queued` (large groups,
membership announcements, VOIDs); the handler checks again, so an unfiltered record is harmless.
The batch is fanned out as a whole (one member read per chat and membership version, one
connection lookup per 100 users, envelopes sent ten per SQS call) rather than record by record,
which is why this handler does not use powertools' per-record BatchProcessor. A failure fails the
batch: Lambda bisects and retries it (a retry may push a frame twice; the SDK drops duplicates).
"""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.dal.message_store import stored_from_image
from chat_backend.handler_kit import lambda_handler
from chat_backend.logic.fanout import fan_out
from chat_backend.observability import count, logger
from chat_backend.services import services


@lambda_handler("fanout")
@event_source(data_class=DynamoDBStreamEvent)
def handler(event: DynamoDBStreamEvent, context: LambdaContext) -> dict[str, Any]:
    items = [
        stored_from_image(r.raw_event["dynamodb"]["NewImage"])
        for r in event.records
        if r.event_name == DynamoDBRecordEventName.INSERT
    ]
    s = services()
    envelopes = fan_out(s.store, s.messages, s.member_lists, s.pusher, items, s.notify_queue)
    logger.debug("fanned out", extra={"items": len(items), "envelopes": envelopes})
    count("MessagesFannedOut", len(items))
    count("EnvelopesEnqueued", envelopes)
    return {"batchItemFailures": []}
