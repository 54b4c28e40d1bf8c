"""Member-jobs queue -> the rest of a large addMembers / createChat, chunk by chunk (logic/member_jobs.py).
One job per invocation; what its time does not cover goes back on the queue as a new job. A job
that fails is given back by SQS and goes on where the chat now stands (members already in are skipped)."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.logic.member_jobs import run_member_job
from chat_backend.models.queue_payloads import MemberJob
from chat_backend.observability import count, logger, metrics, tracer
from chat_backend.services import services

processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = services()

    def run(record: SQSRecord) -> None:
        job = MemberJob.model_validate_json(record.body)
        left = run_member_job(
            s.ledger,
            s.consent,
            s.io_pool,
            s.member_jobs,
            job,
            s.settings.hole_grace_s,
            lambda: context.get_remaining_time_in_millis() / 1000,
        )
        count("MemberJobsContinued", 1 if left else 0)

    return process_partial_response(event=event, record_handler=run, processor=processor, context=context)
