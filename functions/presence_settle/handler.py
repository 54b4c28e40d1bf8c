"""Presence-settle queue -> OFFLINE for users whose last device left more than the grace ago and
did not come back. Each job is one user; FIFO groups are users, so one user's jobs run in order."""

import time
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.dal.presence_store import settle_job_user
from chat_backend.logic.presence import settle
from chat_backend.observability import count, logger, metrics, tracer
from chat_backend.services import services

processor = SqsFifoPartialProcessor(skip_group_on_error=True)


def settle_record(record: SQSRecord) -> None:
    s = services()
    if settle(s.presence, s.pusher, s.settle_queue, settle_job_user(record.body), time.time()):
        count("PresenceOfflinePushes")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=settle_record, processor=processor, context=context
    )
