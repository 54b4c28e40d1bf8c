"""Summaries queue -> RECEIPT_SUMMARY to the senders of large-group messages.

The batch is summarized as a whole (each chat's watermarks read once for all of its jobs) rather
than record by record, which is why this handler does not use powertools' per-record processor.
A failure fails the batch and SQS retries it: a summary is a recount, so repeating one is
harmless (a sender may see the same counts twice).
"""

from typing import Any

from aws_lambda_powertools.utilities.data_classes import SQSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import lambda_handler
from chat_backend.logic.receipts import summarize
from chat_backend.models.queue_payloads import SummaryJob
from chat_backend.observability import count, logger
from chat_backend.services import services


@lambda_handler("summaries")
@event_source(data_class=SQSEvent)
def handler(event: SQSEvent, context: LambdaContext) -> dict[str, Any]:
    jobs = [SummaryJob.model_validate_json(record.body) for record in event.records]
    s = services()
    result = summarize(s.receipts, s.pusher, jobs)
    logger.debug("summarized", extra={"jobs": len(jobs), "pushed": result.pushed})
    count("SummariesPushed", result.pushed)
    return {"batchItemFailures": []}
