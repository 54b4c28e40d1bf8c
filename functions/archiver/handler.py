"""Schedule -> the archiver: messages older than CHAT_HOT_DAYS move from the messages table to the
archive bucket (logic/archive.py). "Now" is the scheduled event's `time` (EventBridge's; the local
stack's timer sends the same shape). A scheduled event may name `detail.chatIds` to archive just
those chats (an operator's run); otherwise the chats come from the archiveDue index. It stops
taking ranges 5 s before its timeout; the rest are due again at the next run."""

import time
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat_backend.handler_kit import lambda_handler
from chat_backend.logic.archive import ArchivePolicy, archive_due
from chat_backend.observability import count, logger
from chat_backend.services import services

RESERVE_MS = 5_000  # left for the range in progress when the archiver stops taking new ones


def event_time_ms(event: dict[str, Any]) -> int:
    at = event.get("time")
    if not at:
        return int(time.time() * 1000)
    return int(datetime.fromisoformat(str(at).replace("Z", "+00:00")).timestamp() * 1000)


@lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    s = services()
    policy = ArchivePolicy(hot_days=s.settings.hot_days, grace_s=s.settings.hole_grace_s)
    detail = event.get("detail") or {}
    only = detail.get("chatIds") if isinstance(detail, dict) else None
    report = archive_due(
        s.ledger,
        s.archive,
        policy,
        event_time_ms(event),
        keep_going=lambda: context.get_remaining_time_in_millis() > RESERVE_MS,
        only=[str(c) for c in only] if isinstance(only, list) else None,
    )
    logger.info("archived", extra=vars(report))
    count("ArchivedMessages", report.archived)
    count("ArchiveRanges", report.ranges)
    return dict(vars(report))
