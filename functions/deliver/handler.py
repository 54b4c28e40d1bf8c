"""Delivery queue -> connections: each envelope's recipients pushed in parallel; a recipient whose
push fails goes back on the queue alone, with a delay (logic/push.py), so a record fails only when
that re-enqueue itself fails (then SQS retries the envelope; the SDK drops duplicates)."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.deliver import deliver
from chat_backend.models.queue_payloads import DeliveryEnvelope
from chat_backend.observability import count, logger, metrics, tracer
from chat_backend.services import services

processor = BatchProcessor(event_type=EventType.SQS)


def deliver_record(record: SQSRecord) -> None:
    s = services()
    result = deliver(DeliveryEnvelope.model_validate_json(record.body), s.pusher, s.presence)
    count("RecipientsPushed", result.pushed)
    count("ConnectionsGone", result.gone)
    count("PushesRetried", result.retried)
    count("PushesDropped", result.dropped)
    if result.unqueued:  # their retries could not be queued: let SQS give the envelope back
        raise RuntimeError(f"{result.unqueued} failed recipients could not be queued for a retry")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=deliver_record, processor=processor, context=context
    )
