"""Presence driven on an explicit clock, for test_presence.py and test_presence_pushes.py (through
conftest.py's `world` and `bob_watches_alice`): alice, bob and their devices against moto,
connecting, subscribing, heartbeating and settling at the times a test names, and what the Pusher
posted or left on the delivery queue for a retry."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue
from chat_backend.dal.presence_store import PresenceStore, SettleQueue, settle_job_user
from chat_backend.logic import presence as logic
from chat_backend.logic.connections import close_connection, open_connection
from chat_backend.logic.push import Pusher, RetryPolicy
from chat_backend.models.client_frames import PresenceFrame
from chat_backend.models.common import iso_at
from chat_backend.models.events import Caller
from chat_backend.models.queue_payloads import DeliveryEnvelope
from tests.unit.helpers import caller

if TYPE_CHECKING:  # conftest builds the world from these modules: a type only, no import cycle
    from tests.unit.conftest import RecordingPoster

T0 = 1_900_000_000.0  # a fixed clock: every step of these tests says when it happens
TTL_S = 7200


class Poster:
    """Records what the Pusher posts; posts to the connections in `failing` raise (a throttled or
    timed-out PostToConnection)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.failing: set[str] = set()

    def post(self, connection_id: str, data: str) -> None:
        if connection_id in self.failing:
            raise RuntimeError(f"LimitExceededException on {connection_id}")
        self.posts.append((connection_id, json.loads(data)))


@dataclass
class World:
    """Alice, Bob and their devices against moto, driven on an explicit clock."""

    aws_env: Any
    store: ChatStore
    registry: ConnectionRegistry
    presence: PresenceStore
    queue: DeliveryQueue
    settle_queue: SettleQueue
    pool: ThreadPoolExecutor
    poster: RecordingPoster  # the answers to `presence` frames, posted on the caller's connection
    push_poster: Poster = field(default_factory=Poster)  # what the Pusher posts
    jobs: list[tuple[float, str]] = field(default_factory=list)  # (due, user) of scheduled settles
    dedup_ids: set[str] = field(default_factory=set)

    @property
    def pusher(self) -> Pusher:
        # Retries without delay, so a re-enqueued push is visible on the queue at once.
        return Pusher(self.push_poster, self.registry, self.queue, self.pool, RetryPolicy(base_delay_s=0))  # type: ignore[arg-type]

    def connect(self, who: Caller, at: float) -> None:
        open_connection(self.registry, self.presence, self.pusher, who, TTL_S, clock=lambda: at)

    def disconnect(self, who: Caller, at: float) -> None:
        close_connection(self.registry, self.presence, self.settle_queue, who, clock=lambda: at)
        self._collect_jobs(at)

    def subscribe(self, who: Caller, users: list[str], at: float, unsubscribe: tuple[str, ...] = ()) -> None:
        frame = PresenceFrame.model_validate(
            {"action": "presence", "subscribe": users, "unsubscribe": list(unsubscribe)}
        )
        logic.subscribe(self.store, self.presence, self.poster, self.pool, who, frame, at)  # type: ignore[arg-type]

    def heartbeat(self, who: Caller, at: float) -> None:
        logic.heartbeat(self.store, self.presence, self.pusher, who, at)

    def run_settles(self, until: float) -> int:
        """Run the settle jobs due by `until`, each at its due time (the queue's delay); returns
        how many ran."""
        ran = 0
        while True:
            due = sorted(j for j in self.jobs if j[0] <= until)
            if not due:
                return ran
            when, user = due[0]
            self.jobs.remove(due[0])
            logic.settle(self.presence, self.pusher, self.settle_queue, user, when)
            self._collect_jobs(when)
            ran += 1

    def _collect_jobs(self, at: float) -> None:
        for job in self.aws_env.receive_all("presence_settle"):
            # SQS drops a repeated dedup id for 5 minutes even once the first was consumed; moto
            # forgets it at deletion, so the repeats are dropped here.
            dedup_id = job["Attributes"]["MessageDeduplicationId"]
            if dedup_id not in self.dedup_ids:
                self.dedup_ids.add(dedup_id)
                self.jobs.append((at + logic.SETTLE_DELAY_S, settle_job_user(job["Body"])))

    def pushes(self) -> list[tuple[set[str], dict[str, Any]]]:
        """(recipient connections, PRESENCE frame) of each push posted since last asked: the
        consecutive posts of one frame are one push."""
        found: list[tuple[set[str], dict[str, Any]]] = []
        for connection_id, frame in self.push_poster.posts:
            if found and found[-1][1] == frame:
                found[-1][0].add(connection_id)
            else:
                found.append(({connection_id}, frame))
        self.push_poster.posts.clear()
        return found

    def retries(self) -> list[DeliveryEnvelope]:
        """The envelopes on the delivery queue: pushes that failed and wait for another attempt."""
        return [DeliveryEnvelope.model_validate_json(m["Body"]) for m in self.aws_env.receive_all("delivery")]

    def sub_items(self) -> list[dict[str, Any]]:
        return [i for i in self.aws_env.scan("presence") if i["sk"] != "STATE"]


ALICE_PHONE = caller("u_alice", "d_phone", "conn-alice-phone")
ALICE_LAPTOP = caller("u_alice", "d_laptop", "conn-alice-laptop")
BOB_PHONE = caller("u_bob", "d_phone", "conn-bob-phone")
MALLORY = caller("u_mallory", "d_phone", "conn-mallory")


def iso(seconds: float) -> str:
    return iso_at(int(seconds * 1000) / 1000)
