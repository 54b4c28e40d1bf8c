"""Delivery queue -> connections. FIFO batches: after a failed envelope, the rest of its group
is reported failed too, so a recipient never sees a later message before an earlier one."""

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.deliver import deliver
from chat_backend.models import DeliveryEnvelope
from chat_backend.observability import count, logger, metrics, tracer
from chat_backend.services import services

processor = SqsFifoPartialProcessor(skip_group_on_error=True)


def deliver_record(record: SQSRecord) -> None:
    s = services()
    envelope = DeliveryEnvelope.model_validate_json(record.body)
    gone = deliver(envelope, s.poster, s.registry, s.io_pool)
    count("RecipientsPushed", len(envelope.recipients) - gone)
    count("ConnectionsGone", gone)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=deliver_record, processor=processor, context=context
    )
