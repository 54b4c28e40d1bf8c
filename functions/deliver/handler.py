"""Delivery queue -> connections: each envelope's recipients pushed in parallel; a recipient whose
push fails goes back on the queue alone, with a delay (logic/push.py), so a record fails only when
that re-enqueue itself fails (then SQS retries the envelope; the SDK drops duplicates)."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chat_backend.handler_kit import record_handler
from chat_backend.logic.deliver import deliver
from chat_backend.models.queue_payloads import DeliveryEnvelope
from chat_backend.observability import count
from chat_backend.services import services


def deliver_record(record: SQSRecord) -> None:
    s = services()
    result = deliver(DeliveryEnvelope.model_validate_json(record.body), s.pusher, s.presence)
    count("RecipientsPushed", result.pushed)
    count("ConnectionsGone", result.gone)
    count("PushesRetried", result.retried)
    count("PushesDropped", result.dropped)
    if result.unqueued:  # their retries could not be queued: let SQS give the envelope back
        raise RuntimeError(f"{result.unqueued} failed recipients could not be queued for a retry")


handler = record_handler("deliver", BatchProcessor(event_type=EventType.SQS), deliver_record)
