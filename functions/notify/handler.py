"""Notify queue -> SNS mobile push: each job's offline members' registered devices get the chat id
and a count (logic/notifications.py). A failure fails that record alone and SQS retries it; a
device notified meanwhile is then coalesced, not notified twice within its window."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chat_backend.handler_kit import record_handler
from chat_backend.logic.notifications import notify
from chat_backend.models.queue_payloads import NotifyJob
from chat_backend.observability import count
from chat_backend.services import services


def notify_record(record: SQSRecord) -> None:
    s = services()
    result = notify(s.push_registry, s.push_sender, s.io_pool, [NotifyJob.model_validate_json(record.body)])
    count("PushNotified", result.notified)
    count("PushCoalesced", result.coalesced)
    count("PushTokensGone", result.gone)
    count("PushRoundsSkipped", result.skipped)


handler = record_handler("notify", BatchProcessor(event_type=EventType.SQS), notify_record)
