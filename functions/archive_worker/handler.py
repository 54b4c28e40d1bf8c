"""Archive queue -> the archiver's fan-out (logic/archive.py): a job lists one shard of the
archiveDue index into jobs of chats, or archives the chats it names. It stops taking chats (or
listing pages) 5 s before its timeout; a listing goes on in a new job, chats left over stay due
for the next hourly run. A failed job fails that record alone and SQS retries it."""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import record_handler
from chat_backend.logic.archive import ArchivePolicy, run_archive_job
from chat_backend.models.queue_payloads import ArchiveJob
from chat_backend.observability import count, logger
from chat_backend.services import services

RESERVE_MS = 5_000  # left for the range in progress when the worker stops taking new work


def archive_record(record: SQSRecord, lambda_context: LambdaContext) -> None:
    s = services()
    report = run_archive_job(
        s.ledger,
        s.archive,
        s.archive_queue,
        ArchivePolicy(hot_days=s.settings.hot_days, grace_s=s.settings.hole_grace_s),
        ArchiveJob.model_validate_json(record.body),
        keep_going=lambda: lambda_context.get_remaining_time_in_millis() > RESERVE_MS,
    )
    logger.info("archive job done", extra=vars(report))
    count("ArchivedMessages", report.archived)
    count("ArchiveRanges", report.ranges)
    count("ArchiveChatsListed", report.listed)


handler = record_handler("archive_worker", BatchProcessor(event_type=EventType.SQS), archive_record)
