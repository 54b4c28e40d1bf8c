"""Schedule -> the archiver: messages older than CHAT_HOT_DAYS move from the messages table to the
archive bucket (logic/archive.py). "Now" is the scheduled event's `time` (EventBridge's; the local
stack's timer sends the same shape). The hourly run puts one job a shard of the archiveDue index on
the archive queue (the archive_worker function takes them). A scheduled event may name
`detail.chatIds` to archive just those chats here and now (an operator's run), stopping 5 s before
its timeout; what is left is due again at the next run."""

import time
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import lambda_handler
from chat_backend.logic.archive import ArchivePolicy, archive_chats, plan_archive
from chat_backend.observability import count, logger
from chat_backend.services import services

RESERVE_MS = 5_000  # left for the range in progress when the archiver stops taking new ones


def event_time_ms(event: dict[str, Any]) -> int:
    at = event.get("time")
    if not at:
        return int(time.time() * 1000)
    return int(datetime.fromisoformat(str(at).replace("Z", "+00:00")).timestamp() * 1000)


@lambda_handler("archiver")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = services()
    detail = event.get("detail") or {}
    only = detail.get("chatIds") if isinstance(detail, dict) else None
    if not isinstance(only, list):
        jobs = plan_archive(s.archive_queue, event_time_ms(event))
        logger.info("archive planned", extra={"jobs": jobs})
        return {"jobs": jobs}
    policy = ArchivePolicy(hot_days=s.settings.hot_days, grace_s=s.settings.hole_grace_s)
    report = archive_chats(
        s.ledger,
        s.archive,
        policy,
        event_time_ms(event),
        keep_going=lambda: context.get_remaining_time_in_millis() > RESERVE_MS,
        chat_ids=[str(c) for c in only],
    )
    logger.info("archived", extra=vars(report))
    count("ArchivedMessages", report.archived)
    count("ArchiveRanges", report.ranges)
    return dict(vars(report))
