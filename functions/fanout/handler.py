"""Messages stream -> delivery queue. Each INSERT is fanned out to its chat's online devices;
a failed record is reported alone (ReportBatchItemFailures) and retried."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from chat_backend.dal.chat_store import message_from_image
from chat_backend.logic.fanout import fan_out
from chat_backend.observability import logger
from chat_backend.services import services

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def fan_out_record(record: DynamoDBRecord) -> None:
    if record.raw_event.get("eventName") != "INSERT":
        return
    s = services()
    fan_out(s.store, s.registry, s.queue, message_from_image(record.raw_event["dynamodb"]["NewImage"]))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=fan_out_record, processor=processor, context=context
    )
