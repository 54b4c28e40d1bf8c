"""Member-jobs queue -> the rest of a large addMembers / createChat, chunk by chunk (logic/member_jobs.py).
One job per invocation; what its time does not cover goes back on the queue as a new job. A job
that fails is given back by SQS and goes on where the chat now stands (members already in are skipped)."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import record_handler
from chat_backend.logic.member_jobs import run_member_job
from chat_backend.models.queue_payloads import MemberJob
from chat_backend.observability import count
from chat_backend.services import services


def run_job(record: SQSRecord, lambda_context: LambdaContext) -> None:
    s = services()
    job = MemberJob.model_validate_json(record.body)
    left = run_member_job(
        s.ledger,
        s.consent,
        s.io_pool,
        s.member_jobs,
        job,
        s.settings.hole_grace_s,
        lambda: lambda_context.get_remaining_time_in_millis() / 1000,
    )
    count("MemberJobsContinued", 1 if left else 0)


handler = record_handler("member_jobs", BatchProcessor(event_type=EventType.SQS), run_job)
