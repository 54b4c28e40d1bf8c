"""presence (logic/presence.py, dal/presence_store.py): ONLINE while any device is connected,
OFFLINE with lastSeen after the grace, told only to live subscribers who share a chat with the
user, on an explicit clock (presence_world.py). How changes are pushed (no storm, retries, the
functions posting directly) is in test_presence_pushes.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chat_backend.dal.chat_store import ChatStore
from chat_backend.errors import Forbidden
from chat_backend.logic import presence as logic
from chat_backend.wiring import PRESENCE_GRACE_S
from tests.unit.helpers import caller
from tests.unit.presence_world import ALICE_LAPTOP, ALICE_PHONE, BOB_PHONE, MALLORY, T0, World, iso


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
