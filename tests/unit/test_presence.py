"""presence (logic/presence.py, dal/presence_store.py, the connect, presence and presence_settle
functions): ONLINE while any device is connected, OFFLINE with lastSeen after the grace, pushed
only to live subscribers who share a chat with the user; no storm when a user flaps."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from chat_backend.dal import aws
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue
from chat_backend.dal.presence_store import PresenceStore, SettleQueue, settle_job_user
from chat_backend.errors import Forbidden
from chat_backend.logic import presence as logic
from chat_backend.logic.connections import close_connection, open_connection
from chat_backend.logic.deliver import deliver
from chat_backend.logic.push import Pusher, PushResult, RetryPolicy
from chat_backend.models.client_frames import PresenceFrame
from chat_backend.models.common import iso_at
from chat_backend.models.events import Caller
from chat_backend.models.queue_payloads import DeliveryEnvelope
from chat_backend.services import services
from chat_backend.wiring import PRESENCE_GRACE_S
from tests.unit.conftest import RecordingPoster
from tests.unit.helpers import caller

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


@pytest.fixture
def world(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    io_pool: ThreadPoolExecutor,
    poster: RecordingPoster,
) -> World:
    return World(
        aws_env, store, registry, services().presence, queue, services().settle_queue, io_pool, poster
    )


ALICE_PHONE = caller("u_alice", "d_phone", "conn-alice-phone")
ALICE_LAPTOP = caller("u_alice", "d_laptop", "conn-alice-laptop")
BOB_PHONE = caller("u_bob", "d_phone", "conn-bob-phone")
MALLORY = caller("u_mallory", "d_phone", "conn-mallory")


def iso(seconds: float) -> str:
    return iso_at(int(seconds * 1000) / 1000)


@pytest.fixture
def bob_watches_alice(world: World, make_chat: Callable[..., str]) -> World:
    """Alice and Bob chat directly (both chose it); Bob is online and subscribed to Alice, who has
    never connected."""
    make_chat("u_alice", "u_bob", kind="direct")
    world.connect(BOB_PHONE, T0)
    world.subscribe(BOB_PHONE, ["u_alice"], T0)
    world.poster.posts.clear()
    return world


def test_subscribe_answers_the_current_status_at_once(world: World, make_chat: Callable[..., str]) -> None:
    # Given alice online since T0 and carol who never connected, both in direct chats with bob
    make_chat("u_alice", "u_bob", kind="direct")
    make_chat("u_carol", "u_bob", kind="direct")
    world.connect(ALICE_PHONE, T0)
    world.connect(BOB_PHONE, T0 + 1)
    # When bob subscribes to both
    world.subscribe(BOB_PHONE, ["u_alice", "u_carol"], T0 + 2)
    # Then his connection gets one PRESENCE per user at once: alice ONLINE, carol OFFLINE never seen
    assert world.poster.posts == [
        (
            "conn-bob-phone",
            {"type": "PRESENCE", "userId": "u_alice", "status": "ONLINE", "lastSeen": iso(T0)},
        ),
        ("conn-bob-phone", {"type": "PRESENCE", "userId": "u_carol", "status": "OFFLINE", "lastSeen": None}),
    ]


def test_connect_pushes_online_to_a_subscriber_sharing_a_chat(bob_watches_alice: World) -> None:
    world = bob_watches_alice
    # When alice connects
    world.connect(ALICE_PHONE, T0 + 10)
    # Then bob's phone is posted ONLINE for alice, directly (nothing waits on the delivery queue)
    assert world.pushes() == [
        (
            {"conn-bob-phone"},
            {"type": "PRESENCE", "userId": "u_alice", "status": "ONLINE", "lastSeen": iso(T0 + 10)},
        )
    ]
    assert world.retries() == []


def test_a_second_device_connecting_pushes_nothing(bob_watches_alice: World) -> None:
    world = bob_watches_alice
    # Given alice online on her phone (bob was told)
    world.connect(ALICE_PHONE, T0 + 10)
    assert len(world.pushes()) == 1
    # When her laptop connects too
    world.connect(ALICE_LAPTOP, T0 + 20)
    # Then nothing more is pushed
    assert world.pushes() == []


def test_last_device_leaving_goes_offline_after_the_grace(bob_watches_alice: World) -> None:
    world = bob_watches_alice
    # Given alice online on phone and laptop
    world.connect(ALICE_PHONE, T0 + 10)
    world.connect(ALICE_LAPTOP, T0 + 11)
    world.pushes()
    # When the laptop leaves, nothing changes and nothing is scheduled: the phone is still there
    world.disconnect(ALICE_LAPTOP, T0 + 20)
    assert world.jobs == []
    # And when the phone leaves too, she is still ONLINE during the grace, and nothing is pushed yet
    world.disconnect(ALICE_PHONE, T0 + 30)
    assert world.pushes() == []
    world.subscribe(BOB_PHONE, ["u_alice"], T0 + 31)
    assert world.poster.frames()[-1]["status"] == "ONLINE"
    # Then the settle job, after the grace, pushes OFFLINE with lastSeen = when the phone left
    assert world.run_settles(until=T0 + 60) == 1
    assert world.pushes() == [
        (
            {"conn-bob-phone"},
            {"type": "PRESENCE", "userId": "u_alice", "status": "OFFLINE", "lastSeen": iso(T0 + 30)},
        )
    ]
    world.subscribe(BOB_PHONE, ["u_alice"], T0 + 61)
    assert world.poster.frames()[-1] == {
        "type": "PRESENCE",
        "userId": "u_alice",
        "status": "OFFLINE",
        "lastSeen": iso(T0 + 30),
    }


def test_reconnecting_within_the_grace_changes_nothing(bob_watches_alice: World) -> None:
    world = bob_watches_alice
    # Given alice online, then her phone dropped
    world.connect(ALICE_PHONE, T0 + 10)
    world.pushes()
    world.disconnect(ALICE_PHONE, T0 + 20)
    # When it reconnects within the grace (new connection) and the settle job runs after it
    world.connect(caller("u_alice", "d_phone", "conn-alice-phone-2"), T0 + 20 + PRESENCE_GRACE_S - 1)
    world.run_settles(until=T0 + 60)
    # Then nothing was pushed at all, and she reads ONLINE
    assert world.pushes() == []
    world.subscribe(BOB_PHONE, ["u_alice"], T0 + 61)
    assert world.poster.frames()[-1]["status"] == "ONLINE"


@pytest.mark.parametrize("target", ["u_alice", "u_nobody"])
def test_a_strangers_subscription_is_forbidden_and_changes_nothing(
    world: World, make_chat: Callable[..., str], target: str
) -> None:
    # Given alice online, in a direct chat with bob only, and in a group mallory made for her;
    # mallory online, in a direct chat with carol
    make_chat("u_alice", "u_bob", kind="direct")
    make_chat("u_mallory", "u_alice")
    make_chat("u_mallory", "u_carol", kind="direct")
    world.connect(ALICE_PHONE, T0)
    world.connect(MALLORY, T0)
    # When mallory subscribes to alice (whose presence a group forced on her does not open), or to a
    # user who does not exist, with carol in the same frame
    with pytest.raises(Forbidden) as refused:
        world.subscribe(MALLORY, ["u_carol", target], T0 + 1)
    # Then the same refusal either way, nothing answered, nothing stored
    assert refused.value.message == "presence of a user who has not opened it to you"
    assert world.poster.posts == []
    assert world.sub_items() == []
    # And alice's later changes push nothing to her
    world.disconnect(ALICE_PHONE, T0 + 10)
    world.run_settles(until=T0 + 60)
    world.connect(ALICE_PHONE, T0 + 70)
    assert world.pushes() == []


def test_an_expired_subscription_gets_no_push_and_a_heartbeat_renews_it(
    world: World, make_chat: Callable[..., str]
) -> None:
    # Given bob subscribed to alice and carol at T0, and renewing by heartbeat only his watch of carol
    make_chat("u_alice", "u_bob", kind="direct")
    make_chat("u_carol", "u_bob", kind="direct")
    world.connect(BOB_PHONE, T0)
    world.subscribe(BOB_PHONE, ["u_alice"], T0)
    bob_laptop = caller("u_bob", "d_laptop", "conn-bob-laptop")
    world.connect(bob_laptop, T0)
    world.subscribe(bob_laptop, ["u_carol"], T0)
    world.heartbeat(bob_laptop, T0 + 300)
    # When both connect after the first subscription's 10 minutes (but within the renewed one)
    world.connect(ALICE_PHONE, T0 + logic.SUBSCRIPTION_S + 1)
    world.connect(caller("u_carol", "d_phone", "conn-carol"), T0 + logic.SUBSCRIPTION_S + 2)
    # Then only carol's ONLINE reaches bob (his laptop), alice's expired subscription gets nothing
    [(recipients, frame)] = world.pushes()
    assert (recipients, frame["userId"], frame["status"]) == ({"conn-bob-laptop"}, "u_carol", "ONLINE")


def test_unsubscribe_stops_pushes(bob_watches_alice: World) -> None:
    world = bob_watches_alice
    # When bob unsubscribes from alice, then alice connects
    world.subscribe(BOB_PHONE, [], T0 + 1, unsubscribe=("u_alice",))
    world.connect(ALICE_PHONE, T0 + 10)
    # Then nothing is pushed and nothing of the subscription is left
    assert world.pushes() == []
    assert world.sub_items() == []


def test_a_lapsed_lease_reads_offline_without_any_disconnect(
    world: World, make_chat: Callable[..., str]
) -> None:
    # Given alice connected at T0, whose device then went silent (no heartbeat, no $disconnect)
    make_chat("u_alice", "u_bob", kind="direct")
    world.connect(ALICE_PHONE, T0)
    world.connect(BOB_PHONE, T0)
    # When bob subscribes once her lease has run out
    world.subscribe(BOB_PHONE, ["u_alice"], T0 + logic.LEASE_S + 1)
    # Then she reads OFFLINE, last seen at T0
    assert world.poster.frames() == [
        {"type": "PRESENCE", "userId": "u_alice", "status": "OFFLINE", "lastSeen": iso(T0)}
    ]
    # And when she heartbeats again, bob is told she is ONLINE
    world.heartbeat(ALICE_PHONE, T0 + logic.LEASE_S + 10)
    [(_, frame)] = world.pushes()
    assert frame["status"] == "ONLINE"


def test_a_heartbeat_drops_subscriptions_on_users_who_closed_their_presence(
    world: World, store: ChatStore, make_chat: Callable[..., str]
) -> None:
    # Given bob watching alice through their direct chat
    chat_id = make_chat("u_alice", "u_bob", kind="direct")
    world.connect(BOB_PHONE, T0)
    world.subscribe(BOB_PHONE, ["u_alice"], T0)
    # When alice's side of the chat closes (she blocks him there) and bob heartbeats
    store.set_blocked(chat_id, "u_alice", True)
    world.heartbeat(BOB_PHONE, T0 + 60)
    # Then his subscription ends: nothing stored, and alice's connect pushes nothing to him
    assert world.sub_items() == []
    world.connect(ALICE_PHONE, T0 + 70)
    assert world.pushes() == []


def test_a_chat_someone_made_opens_nothing_until_its_member_writes_in_it(
    world: World, store: ChatStore, make_chat: Callable[..., str]
) -> None:
    # Given a direct chat mallory made with alice, in which alice has never written
    chat_id = make_chat("u_alice", "u_mallory", kind="direct")
    store.ddb.update_item(
        TableName=store.chats_table,
        Key={"chatId": {"S": chat_id}, "sk": {"S": "META"}},
        UpdateExpression="SET engaged = :m",
        ExpressionAttributeValues={":m": {"SS": ["u_mallory"]}},
    )
    world.connect(MALLORY, T0)
    # When mallory subscribes to alice, Then it is forbidden
    with pytest.raises(Forbidden):
        world.subscribe(MALLORY, ["u_alice"], T0 + 1)
    # But alice may watch mallory, who chose the chat
    world.connect(ALICE_PHONE, T0)
    world.subscribe(ALICE_PHONE, ["u_mallory"], T0 + 2)
    assert world.poster.frames()[-1]["status"] == "ONLINE"


# --- no presence storm ---------------------------------------------------------------------------


@pytest.fixture
def write_counter(aws_env: Any) -> Iterator[Counter[str]]:
    """Counts the functions' AWS calls by operation (the very clients the services use)."""
    counts: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counts[model.name] += 1

    clients = [aws.client("dynamodb"), aws.client("sqs")]
    for c in clients:
        c.meta.events.register("before-call.*.*", count)
    yield counts
    for c in clients:
        c.meta.events.unregister("before-call.*.*", count)


FLAPS = 20


def test_a_flapping_user_pushes_at_most_two_changes_and_costs_bounded_writes(
    bob_watches_alice: World, write_counter: Counter[str]
) -> None:
    world = bob_watches_alice
    write_counter.clear()
    # When alice's phone flaps FLAPS times (connected 0.2 s, disconnected 0.2 s), new connection each
    # time, the settle jobs running at their due times throughout, then stays away
    for n in range(FLAPS):
        start = T0 + 10 + 0.4 * n
        world.run_settles(until=start)
        phone = caller("u_alice", "d_phone", f"conn-alice-{n}")
        world.connect(phone, start)
        world.disconnect(phone, start + 0.2)
    settles = world.run_settles(until=T0 + 60)
    # Then bob got exactly one ONLINE and one OFFLINE
    statuses = [frame["status"] for _, frame in world.pushes()]
    assert statuses == ["ONLINE", "OFFLINE"]
    # And presence writes are a constant per flap (the lease renewed on connect and shortened on
    # disconnect, as the registry's own two writes) plus the one OFFLINE, whoever watches her
    presence_writes = write_counter["UpdateItem"] - 2 * FLAPS  # minus the registry's two per flap
    assert presence_writes <= 2 * FLAPS + 1
    # And settle jobs coalesce: at most one per half-second slot over the 8 s of flapping and the
    # grace after it, each a few reads (its one write is the OFFLINE)
    flapping_s = 0.4 * FLAPS
    assert settles <= (flapping_s + PRESENCE_GRACE_S) / logic.SETTLE_SLOT_S + 1
    # And SQS sends are settle jobs only (the pushes are posted directly): at most one per
    # disconnect and one per settle that looks again, whoever watches her
    assert write_counter["SendMessageBatch"] <= FLAPS + settles
    assert world.retries() == []
    print(
        f"\n{FLAPS} flaps: pushes={len(statuses)} presence writes={presence_writes} "
        f"settle jobs run={settles} calls={dict(write_counter)}"
    )


# --- failed pushes -------------------------------------------------------------------------------


def test_a_failed_presence_push_is_retried_with_the_status_version_it_announces(
    bob_watches_alice: World,
) -> None:
    world = bob_watches_alice
    # Given bob watching alice on his phone (throttled) and his laptop
    bob_laptop = caller("u_bob", "d_laptop", "conn-bob-laptop")
    world.connect(bob_laptop, T0 + 1)
    world.subscribe(bob_laptop, ["u_alice"], T0 + 1)
    world.push_poster.failing.add("conn-bob-phone")
    # When alice connects
    world.connect(ALICE_PHONE, T0 + 10)
    # Then the laptop got ONLINE at once, and the phone alone waits on the delivery queue with the
    # same frame, guarded by alice's status version
    [(recipients, frame)] = world.pushes()
    assert (recipients, frame["status"]) == ({"conn-bob-laptop"}, "ONLINE")
    [retry] = world.retries()
    state = world.presence.state_of("u_alice")
    assert state is not None
    assert [r.connection_id for r in retry.recipients] == ["conn-bob-phone"]
    assert (json.loads(retry.frame), retry.attempt) == (frame, 1)
    assert (retry.presence.user_id, retry.presence.version) == ("u_alice", state.version)  # type: ignore[union-attr]
    # When the phone is reachable again and the retry is delivered while she is still ONLINE
    world.push_poster.failing.clear()
    result = deliver(retry, world.pusher, world.presence)
    # Then the phone gets that ONLINE
    assert result == PushResult(pushed=1)
    assert world.pushes() == [({"conn-bob-phone"}, frame)]


def test_a_presence_retry_is_dropped_once_the_status_moved_on(bob_watches_alice: World) -> None:
    world = bob_watches_alice
    # Given alice's ONLINE failed to reach bob's phone and waits on the delivery queue
    world.push_poster.failing.add("conn-bob-phone")
    world.connect(ALICE_PHONE, T0 + 10)
    [retry] = world.retries()
    world.push_poster.failing.clear()
    # And alice then left, and went OFFLINE after the grace (bob was told)
    world.disconnect(ALICE_PHONE, T0 + 20)
    world.run_settles(until=T0 + 60)
    [(_, offline)] = world.pushes()
    assert offline["status"] == "OFFLINE"
    # When the stale ONLINE retry is delivered
    result = deliver(retry, world.pusher, world.presence)
    # Then it is dropped unposted: bob's last word on alice stays OFFLINE
    assert result == PushResult(dropped=1)
    assert world.pushes() == []
    assert world.retries() == []


def test_the_connect_function_posts_online_to_the_watchers_directly(
    bob_watches_alice: World,
    management_api: Any,
    handler_of: Callable[[str], Any],
    make_connect_event: Callable[..., dict[str, Any]],
    lambda_context: Any,
) -> None:
    # Given bob watching alice, and a management API that accepts every post
    posted: list[tuple[str, dict[str, Any]]] = []
    management_api.meta.events.register(
        "before-parameter-build.apigatewaymanagementapi.PostToConnection",
        lambda params, **_: posted.append((params["ConnectionId"], json.loads(params["Data"]))),
    )
    management_api.meta.events.register(
        "before-call.apigatewaymanagementapi.PostToConnection",
        lambda **_: (AWSResponse(None, 200, {}, None), {}),  # type: ignore[arg-type]
    )
    # When alice's phone connects through the connect function
    answer = handler_of("connect")(make_connect_event("u_alice", "d_phone", "conn-a1"), lambda_context)
    # Then the connection is accepted, and bob's phone was posted ONLINE for alice by the function
    # itself, nothing going through the delivery queue
    assert answer == {"statusCode": 200}
    assert [(c, f["userId"], f["status"]) for c, f in posted] == [("conn-bob-phone", "u_alice", "ONLINE")]
    assert bob_watches_alice.retries() == []


def test_the_presence_route_answers_forbidden_for_a_stranger(
    aws_env: Any,
    handler_of: Callable[[str], Any],
    make_message_event: Callable[..., dict[str, Any]],
    lambda_context: Any,
) -> None:
    # Given mallory, who shares no chat with anyone
    # When she sends a presence frame subscribing to alice through the presence function
    event = make_message_event({"action": "presence", "subscribe": ["u_alice"]}, user_id="u_mallory")
    answer = handler_of("presence")(event, lambda_context)
    # Then the frame is answered with ERROR FORBIDDEN and nothing is stored
    assert json.loads(answer["body"]) == {
        "type": "ERROR",
        "code": "FORBIDDEN",
        "message": "presence of a user who has not opened it to you",
        "requestId": None,
        "clientMsgId": None,
    }
    assert aws_env.scan("presence") == []
