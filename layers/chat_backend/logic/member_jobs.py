"""Membership changes too large for one invocation: the rest of an `addMembers` or a `createChat`
that ran out of time becomes a job on the member-jobs queue (SQS FIFO, one group per chat: a
chat's jobs run in order), and the member-jobs function carries it on, chunk by chunk, putting
what it could not finish back on the queue.

Each chunk is one membership change (`membership_changes.change_members`): its `added`
announcement names exactly who got in, and its transaction makes them members at once, so no
half-applied membership is ever visible. A job that dies mid-way comes back from SQS and goes on
(members already in are skipped). Seats are not reserved: each chunk checks the 10,000-member
limit when it commits, so an add by someone else meanwhile may take seats a job wanted; those
users are in no announcement.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from concurrent.futures import Executor

from chat_backend.dal.consent_store import ConsentStore
from chat_backend.dal.delivery_queue import FifoQueue, QueuedMessage
from chat_backend.errors import BadRequest, Forbidden, GroupFull
from chat_backend.logic.consent import addable
from chat_backend.logic.membership_changes import MEMBERS_PER_ADD, change_members
from chat_backend.logic.send import Ledger
from chat_backend.models.queue_payloads import MemberJob
from chat_backend.models.records import ChatMeta
from chat_backend.observability import logger

TimeLeft = Callable[[], float]  # seconds the invocation has left

# No chunk is begun with less than this left: one chunk (a membership read, a seq, a transaction
# of ~100 items) takes well under it even on a busy table.
MARGIN_S = 3.0
# Users per job message: 2,000 ids of at most 64 characters stay under SQS's 256 KiB.
JOB_USERS_MAX = 2000


def no_deadline() -> float:
    return math.inf


def add_in_time(
    ledger: Ledger, by: str, chat_id: str, users: list[str], grace_s: float, time_left: TimeLeft
) -> tuple[ChatMeta | None, list[str]]:
    """Add `users` a chunk at a time while the time lasts (the first chunk always): the chat after
    the last chunk that ran (None if none did), and the users no chunk took yet."""
    chat: ChatMeta | None = None
    for start in range(0, len(users), MEMBERS_PER_ADD):
        if start > 0 and time_left() < MARGIN_S:
            return chat, users[start:]
        chat = change_members(ledger, by, chat_id, users[start : start + MEMBERS_PER_ADD], "added", grace_s)
    return chat, []


def enqueue_adds(jobs: FifoQueue, chat_id: str, by: str, users: list[str]) -> None:
    """The users still to add, as jobs of at most JOB_USERS_MAX. The deduplication id is the job's
    content: the same continuation queued twice (an invocation that died after queueing it and
    came back) is queued once."""
    messages = []
    for start in range(0, len(users), JOB_USERS_MAX):
        job = MemberJob(chat_id=chat_id, by=by, users=users[start : start + JOB_USERS_MAX])
        body = job.model_dump_json()
        messages.append(
            QueuedMessage(group_id=chat_id, dedup_id=hashlib.sha256(body.encode()).hexdigest(), body=body)
        )
    jobs.send(messages)


def run_member_job(
    ledger: Ledger,
    consent: ConsentStore,
    pool: Executor,
    jobs: FifoQueue,
    job: MemberJob,
    grace_s: float,
    time_left: TimeLeft,
) -> int:
    """Carry a job on; returns how many users it left for a later job. The requester's right to
    add, and each user's consent, are decided again now: either may have changed since."""
    users, _ = addable(consent, ledger.chats, pool, job.by, job.users)
    try:
        _, rest = add_in_time(ledger, job.by, job.chat_id, users, grace_s, time_left)
    except (Forbidden, GroupFull, BadRequest) as exc:
        # The requester may no longer add, or the group filled up: what got in was announced.
        logger.info(
            "member job ended", extra={"chat_id": job.chat_id, "reason": str(exc), "left": len(users)}
        )
        return 0
    if rest:
        enqueue_adds(jobs, job.chat_id, job.by, rest)
    return len(rest)
