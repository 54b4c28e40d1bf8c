"""Notify queue -> SNS mobile push: each job's offline members' registered devices get the chat id
and a count (logic/notifications.py). A failure fails that record alone and SQS retries it; a
device notified meanwhile is then coalesced, not notified twice within its window."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.notifications import notify
from chat_backend.models.queue_payloads import NotifyJob
from chat_backend.observability import count, logger, metrics, tracer
from chat_backend.services import services

processor = BatchProcessor(event_type=EventType.SQS)


def notify_record(record: SQSRecord) -> None:
    s = services()
    result = notify(s.push_registry, s.push_sender, s.io_pool, [NotifyJob.model_validate_json(record.body)])
    count("PushNotified", result.notified)
    count("PushCoalesced", result.coalesced)
    count("PushTokensGone", result.gone)
    count("PushRoundsSkipped", result.skipped)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=notify_record, processor=processor, context=context
    )
