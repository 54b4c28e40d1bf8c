"""Mobile push to devices that are not connected (protocol v1.1: registerPush / unregisterPush).

A device registers its platform and token; the server makes it an SNS platform endpoint. When a
message is pushed and some members have no device connected, the pushing function puts those
members on the notify queue (one job per message, 2,000 users a job); the notify function then
sends each of their registered devices the chat id and a count, never content (end-to-end
encryption: the app wakes, syncs and decrypts).

Kept few: a device is notified at most once per NOTIFY_DEVICE_WINDOW_S (what arrives meanwhile is
counted into its next notification), and a large group's offline members at most once per
NOTIFY_LARGE_CHAT_WINDOW_S, whatever the traffic (a busy group of 10,000 is one round a minute,
not one per message). A token the platform no longer accepts is removed with its endpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

from chat_backend import wiring
from chat_backend.dal.delivery_queue import NotifyQueue
from chat_backend.dal.push_registry import PushRegistration, PushRegistry
from chat_backend.dal.push_sender import PushSender
from chat_backend.errors import BadRequest, PushEndpointGone
from chat_backend.models.client_frames import RegisterPushFrame, UnregisterPushFrame
from chat_backend.models.events import Caller
from chat_backend.models.queue_payloads import NotifyJob
from chat_backend.models.server_frames import OkFrame

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NotifyResult:
    notified: int = 0  # devices sent a notification
    coalesced: int = 0  # devices notified within their window: counted into the next
    gone: int = 0  # tokens the platform refused: registration and endpoint removed
    skipped: int = 0  # users of a large group's message outside its chat window

    def __add__(self, other: NotifyResult) -> NotifyResult:
        return NotifyResult(
            self.notified + other.notified,
            self.coalesced + other.coalesced,
            self.gone + other.gone,
            self.skipped + other.skipped,
        )


def register_push(
    registry: PushRegistry, sender: PushSender, caller: Caller, frame: RegisterPushFrame
) -> OkFrame:
    if frame.platform not in sender.platforms:
        raise BadRequest(f"push platform {frame.platform} is not configured on this deployment")
    endpoint = sender.endpoint_for(frame.platform, frame.token)
    replaced = registry.register(
        PushRegistration(caller.user_id, caller.device_id, frame.platform, frame.token, endpoint)
    )
    if replaced is not None:
        _forget_endpoint(sender, replaced)
    return OkFrame(request_id=frame.request_id)


def unregister_push(
    registry: PushRegistry, sender: PushSender, caller: Caller, frame: UnregisterPushFrame
) -> OkFrame:
    endpoint = registry.unregister(caller.user_id, caller.device_id)
    if endpoint is not None:
        _forget_endpoint(sender, endpoint)
    return OkFrame(request_id=frame.request_id)


def offline_jobs(
    chat_id: str,
    seq: int,
    members: Sequence[str],
    connected: Collection[str],
    sender: str | None,
    large: bool,
) -> list[NotifyJob]:
    """Jobs for the members (the sender left out) with no device `connected`."""
    offline = [m for m in dict.fromkeys(members) if m != sender and m not in connected]
    step = wiring.NOTIFY_USERS_PER_JOB
    return [
        NotifyJob(chat_id=chat_id, seq=seq, users=offline[start : start + step], large=large)
        for start in range(0, len(offline), step)
    ]


def enqueue_offline(queue: NotifyQueue, jobs: list[NotifyJob]) -> None:
    """Best effort: a notification is a wake-up call, never the message; the caller's work (an
    ACK, a fan-out) does not fail for it."""
    if not jobs:
        return
    try:
        queue.enqueue(jobs)
    except Exception:
        logger.exception("could not queue %d notify jobs", len(jobs))


def notify(
    registry: PushRegistry,
    sender: PushSender,
    pool: Executor,
    jobs: Sequence[NotifyJob],
    now: int | None = None,
) -> NotifyResult:
    now = int(time.time()) if now is None else now
    total = NotifyResult()
    for job in jobs:
        if job.large and not registry.open_chat_round(
            job.chat_id, job.seq, now, wiring.NOTIFY_LARGE_CHAT_WINDOW_S
        ):
            total += NotifyResult(skipped=len(job.users))
            continue
        registrations = registry.registrations_of(job.users)
        chats = [job.chat_id] * len(registrations)
        for outcome in pool.map(partial(_notify_device, registry, sender, now=now), registrations, chats):
            total += outcome
    return total


def _notify_device(
    registry: PushRegistry, sender: PushSender, registration: PushRegistration, chat_id: str, *, now: int
) -> NotifyResult:
    count = registry.take_turn(registration, now, wiring.NOTIFY_DEVICE_WINDOW_S)
    if count is None:
        return NotifyResult(coalesced=1)
    try:
        sender.notify(registration.endpoint_arn, registration.platform, chat_id, count)
    except PushEndpointGone:
        registry.unregister(registration.user_id, registration.device_id, registration.endpoint_arn)
        _forget_endpoint(sender, registration.endpoint_arn)
        return NotifyResult(gone=1)
    return NotifyResult(notified=1)


def _forget_endpoint(sender: PushSender, endpoint_arn: str) -> None:
    try:
        sender.delete(endpoint_arn)
    except Exception:  # an endpoint left behind costs nothing; the registration is what counts
        logger.warning("could not delete push endpoint %s", endpoint_arn, exc_info=True)
