"""Heartbeats (logic/connections.beat + ConnectionRegistry.beat + functions/presence): the PONG names
the chats whose head moved since the connection's previous heartbeat (or since it connected), so a
connected device notices a push it missed within one heartbeat."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue
from chat_backend.logic.connections import beat
from chat_backend.logic.members import add_members, remove_members
from chat_backend.logic.push import Pusher
from chat_backend.logic.send import Ledger, SendPolicy, send_message
from chat_backend.models import AddMembersFrame, Caller, PongFrame, RemoveMembersFrame, SendFrame, iso_at
from chat_backend.services import services
from tests.unit.conftest import RecordingPoster, caller

POLICY = SendPolicy(dedup_ttl_s=3600)
ALICE = caller("u_alice", "d_phone", "conn-alice")
BOB = caller("u_bob", "d_phone", "conn-bob")


@pytest.fixture
def ledger(aws_env: Any) -> Ledger:
    return services().ledger


@pytest.fixture
def pusher(
    registry: ConnectionRegistry, queue: DeliveryQueue, io_pool: ThreadPoolExecutor, poster: RecordingPoster
) -> Pusher:
    return Pusher(poster=poster, registry=registry, queue=queue, pool=io_pool)  # type: ignore[arg-type]


@pytest.fixture
def t0() -> float:
    """Now: the membership changes below stamp the head with the real clock, just after this."""
    return time.time()


def connect(registry: ConnectionRegistry, who: Caller, at: float) -> None:
    registry.register(who.user_id, who.device_id, who.connection_id, iso_at(at), int(at) + 7200)


def send(ledger: Ledger, who: Caller, chat_id: str, at: float) -> int:
    frame = SendFrame.model_validate(
        {"action": "send", "clientMsgId": str(uuid.uuid4()), "chatId": chat_id, "ciphertext": "aGk="}
    )
    return send_message(ledger, who, frame, POLICY, clock=lambda: at).ack.seq


def heartbeat(store: ChatStore, pusher: Pusher, who: Caller, at: float) -> PongFrame:
    return beat(store, services().presence, pusher, who, at)


def test_the_first_pong_lists_the_chats_that_moved_since_the_connection_opened(
    store: ChatStore,
    registry: ConnectionRegistry,
    ledger: Ledger,
    pusher: Pusher,
    make_chat: Callable[..., str],
    t0: float,
) -> None:
    # Given alice's chats with bob (last message before she connected), carol (a message after)
    # and dave (no message at all), and alice's phone connected at t0 - 10
    with_bob, with_carol = make_chat("u_alice", "u_bob"), make_chat("u_alice", "u_carol")
    make_chat("u_alice", "u_dave")
    send(ledger, BOB, with_bob, t0 - 100)
    connect(registry, ALICE, t0 - 10)
    send(ledger, caller("u_carol"), with_carol, t0 + 10)
    send(ledger, caller("u_carol"), with_carol, t0 + 11)
    # When her phone heartbeats
    pong = heartbeat(store, pusher, ALICE, t0 + 50)
    # Then the PONG names the chat with carol and its head only
    assert json.loads(pong.to_json()) == {"type": "PONG", "heads": {with_carol: 2}}


def test_a_second_pong_lists_only_the_chats_moved_since_the_first(
    store: ChatStore,
    registry: ConnectionRegistry,
    ledger: Ledger,
    pusher: Pusher,
    make_chat: Callable[..., str],
    t0: float,
) -> None:
    # Given alice connected, a message in her chat with bob, and a heartbeat that reported it
    with_bob, with_carol = make_chat("u_alice", "u_bob"), make_chat("u_alice", "u_carol")
    connect(registry, ALICE, t0 - 10)
    send(ledger, BOB, with_bob, t0 + 10)
    assert heartbeat(store, pusher, ALICE, t0 + 50).heads == {with_bob: 1}
    # When carol writes after it and alice heartbeats again
    send(ledger, caller("u_carol"), with_carol, t0 + 60)
    second = heartbeat(store, pusher, ALICE, t0 + 100)
    # Then only the chat with carol is listed
    assert second.heads == {with_carol: 1}
    # And a third heartbeat with nothing new answers a bare PONG
    assert heartbeat(store, pusher, ALICE, t0 + 150).to_json() == '{"type":"PONG"}'


def test_a_chat_the_user_left_is_not_listed_and_one_she_joined_is(
    store: ChatStore,
    registry: ConnectionRegistry,
    ledger: Ledger,
    pusher: Pusher,
    make_chat: Callable[..., str],
    t0: float,
) -> None:
    # Given alice connected, then removed from bob's group (which moved on without her), and added
    # to carol's group
    connect(registry, ALICE, t0 - 10)
    left, joined = make_chat("u_bob", "u_alice", "u_erin"), make_chat("u_carol", "u_frank")
    removal = RemoveMembersFrame.model_validate(
        {"action": "removeMembers", "requestId": "r1", "chatId": left, "members": ["u_alice"]}
    )
    remove_members(ledger, BOB, removal, grace_s=5)
    send(ledger, BOB, left, t0 + 20)
    addition = AddMembersFrame.model_validate(
        {"action": "addMembers", "requestId": "r2", "chatId": joined, "members": ["u_alice"]}
    )
    add_members(ledger, caller("u_carol"), addition, grace_s=5)

    class LaggingIndex(ChatStore):
        """The byMember index is eventually consistent: it still lists the chat she left."""

        def chat_ids_of(self, user_id: str) -> list[str]:
            return [*super().chat_ids_of(user_id), left]

    lagging = LaggingIndex(store.chats_table, store.messages_table, ddb=store.ddb)
    # When her phone heartbeats (the index lagging her removal)
    pong = heartbeat(lagging, pusher, ALICE, t0 + 50)
    # Then the group she was added to is listed (at its announcement), the one she left is not
    assert pong.heads == {joined: 1}


def test_a_pong_with_no_moved_chat_has_no_heads_key(
    store: ChatStore,
    registry: ConnectionRegistry,
    ledger: Ledger,
    pusher: Pusher,
    make_chat: Callable[..., str],
    t0: float,
) -> None:
    # Given alice connected after the last message of her only chat
    chat_id = make_chat("u_alice", "u_bob")
    send(ledger, BOB, chat_id, t0 - 100)
    connect(registry, ALICE, t0 - 10)
    # When she heartbeats, Then the PONG carries no `heads` at all
    pong = heartbeat(store, pusher, ALICE, t0 + 50)
    assert pong.heads is None and json.loads(pong.to_json()) == {"type": "PONG"}


def test_a_heartbeat_of_a_replaced_connection_answers_a_bare_pong(
    store: ChatStore,
    registry: ConnectionRegistry,
    ledger: Ledger,
    pusher: Pusher,
    make_chat: Callable[..., str],
    t0: float,
) -> None:
    # Given alice's phone reconnected on a new connection, and a message after both
    chat_id = make_chat("u_alice", "u_bob")
    connect(registry, ALICE, t0 - 20)
    connect(registry, caller("u_alice", "d_phone", "conn-alice-new"), t0 - 10)
    send(ledger, BOB, chat_id, t0 + 10)
    # When the old connection's heartbeat arrives late
    pong = heartbeat(store, pusher, ALICE, t0 + 50)
    # Then its PONG lists nothing, and the new connection's first heartbeat still reports the chat
    assert pong.to_json() == '{"type":"PONG"}'
    new = heartbeat(store, pusher, caller("u_alice", "d_phone", "conn-alice-new"), t0 + 60)
    assert new.heads == {chat_id: 1}


def test_the_heartbeat_route_answers_pong_with_the_moved_heads(
    registry: ConnectionRegistry,
    ledger: Ledger,
    make_chat: Callable[..., str],
    handler_of: Callable[[str], Any],
    make_message_event: Callable[..., dict[str, Any]],
    lambda_context: Any,
) -> None:
    # Given alice's phone connected a minute ago, and bob's message since
    chat_id = make_chat("u_alice", "u_bob")
    connect(registry, ALICE, time.time() - 60)
    send(ledger, BOB, chat_id, time.time())
    # When her phone sends heartbeat through the presence function
    event = make_message_event({"action": "heartbeat"}, user_id="u_alice", connection_id="conn-alice")
    answer = handler_of("presence")(event, lambda_context)
    # Then it answers PONG naming the chat and its head
    assert json.loads(answer["body"]) == {"type": "PONG", "heads": {chat_id: 1}}
