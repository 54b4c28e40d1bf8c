"""Heartbeats (logic/connections.beat + ConnectionRegistry.beat + functions/presence): the PONG names
the chats whose head moved since the connection's previous heartbeat (or since it connected), so a
connected device notices a push it missed within one heartbeat."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass

import pytest

from chat_backend.dal.chat_listing import ChatListing
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.logic.connections import beat
from chat_backend.logic.push import Pusher
from chat_backend.logic.send import Ledger
from chat_backend.models.common import iso_at
from chat_backend.models.events import Caller
from chat_backend.models.server_frames import PongFrame
from chat_backend.services import services
from tests.unit.helpers import MakeChat, Route, add, caller, remove, send

ALICE = caller("u_alice", "d_phone", "conn-alice")
BOB = caller("u_bob", "d_phone", "conn-bob")


@pytest.fixture
def t0() -> float:
    """Now: the membership changes below stamp the head with the real clock, just after this."""
    return time.time()


@dataclass
class Devices:
    """Connects devices and heartbeats them, on an explicit clock."""

    store: ChatStore
    registry: ConnectionRegistry
    pusher: Pusher

    def connect(self, who: Caller, at: float) -> None:
        self.registry.register(who.user_id, who.device_id, who.connection_id, iso_at(at), int(at) + 7200)

    def heartbeat(self, who: Caller, at: float, store: ChatStore | None = None) -> PongFrame:
        return beat(store or self.store, services().presence, self.pusher, who, at)


@pytest.fixture
def devices(store: ChatStore, registry: ConnectionRegistry, pusher: Pusher) -> Devices:
    return Devices(store, registry, pusher)


def test_the_first_pong_lists_the_chats_that_moved_since_the_connection_opened(
    ledger: Ledger, make_chat: MakeChat, devices: Devices, t0: float
) -> None:
    # Given alice's chats with bob (last message before she connected), carol (a message after)
    # and dave (no message at all), and alice's phone connected at t0 - 10
    with_bob, with_carol = make_chat("u_alice", "u_bob"), make_chat("u_alice", "u_carol")
    make_chat("u_alice", "u_dave")
    send(ledger, BOB, with_bob, t0 - 100)
    devices.connect(ALICE, t0 - 10)
    send(ledger, caller("u_carol"), with_carol, t0 + 10)
    send(ledger, caller("u_carol"), with_carol, t0 + 11)
    # When her phone heartbeats
    pong = devices.heartbeat(ALICE, t0 + 50)
    # Then the PONG names the chat with carol and its head only
    assert json.loads(pong.to_json()) == {"type": "PONG", "heads": {with_carol: 2}}


def test_a_second_pong_lists_only_the_chats_moved_since_the_first(
    ledger: Ledger, make_chat: MakeChat, devices: Devices, t0: float
) -> None:
    # Given alice connected, a message in her chat with bob, and a heartbeat that reported it
    with_bob, with_carol = make_chat("u_alice", "u_bob"), make_chat("u_alice", "u_carol")
    devices.connect(ALICE, t0 - 10)
    send(ledger, BOB, with_bob, t0 + 10)
    assert devices.heartbeat(ALICE, t0 + 50).heads == {with_bob: 1}
    # When carol writes after it and alice heartbeats again
    send(ledger, caller("u_carol"), with_carol, t0 + 60)
    second = devices.heartbeat(ALICE, t0 + 100)
    # Then only the chat with carol is listed
    assert second.heads == {with_carol: 1}
    # And a third heartbeat with nothing new answers a bare PONG
    assert devices.heartbeat(ALICE, t0 + 150).to_json() == '{"type":"PONG"}'


def test_a_chat_the_user_left_is_not_listed_and_one_she_joined_is(
    ledger: Ledger, make_chat: MakeChat, devices: Devices, t0: float
) -> None:
    # Given alice connected, then removed from bob's group (which moved on without her), and added
    # to carol's group
    devices.connect(ALICE, t0 - 10)
    left, joined = make_chat("u_bob", "u_alice", "u_erin"), make_chat("u_carol", "u_frank")
    remove(ledger, BOB, left, ["u_alice"])
    send(ledger, BOB, left, t0 + 20)
    add(ledger, caller("u_carol"), joined, ["u_alice"])

    class LaggingIndex(ChatListing):
        """The byMember index is eventually consistent: it still lists the chat she left."""

        def chat_ids(self, user_id: str) -> list[str]:
            return [*super().chat_ids(user_id), left]

    lagging = copy.copy(ledger.chats)  # the same store, but for its listing
    lagging.listing = LaggingIndex(lagging.chats_table, lagging.ddb)
    # When her phone heartbeats (the index lagging her removal)
    pong = devices.heartbeat(ALICE, t0 + 50, store=lagging)
    # Then the group she was added to is listed (at its announcement), the one she left is not
    assert pong.heads == {joined: 1}


def test_a_pong_with_no_moved_chat_has_no_heads_key(
    ledger: Ledger, make_chat: MakeChat, devices: Devices, t0: float
) -> None:
    # Given alice connected after the last message of her only chat
    chat_id = make_chat("u_alice", "u_bob")
    send(ledger, BOB, chat_id, t0 - 100)
    devices.connect(ALICE, t0 - 10)
    # When she heartbeats, Then the PONG carries no `heads` at all
    pong = devices.heartbeat(ALICE, t0 + 50)
    assert pong.heads is None and json.loads(pong.to_json()) == {"type": "PONG"}


def test_a_heartbeat_of_a_replaced_connection_answers_a_bare_pong(
    ledger: Ledger, make_chat: MakeChat, devices: Devices, t0: float
) -> None:
    # Given alice's phone reconnected on a new connection, and a message after both
    chat_id = make_chat("u_alice", "u_bob")
    devices.connect(ALICE, t0 - 20)
    devices.connect(caller("u_alice", "d_phone", "conn-alice-new"), t0 - 10)
    send(ledger, BOB, chat_id, t0 + 10)
    # When the old connection's heartbeat arrives late
    pong = devices.heartbeat(ALICE, t0 + 50)
    # Then its PONG lists nothing, and the new connection's first heartbeat still reports the chat
    assert pong.to_json() == '{"type":"PONG"}'
    new = devices.heartbeat(caller("u_alice", "d_phone", "conn-alice-new"), t0 + 60)
    assert new.heads == {chat_id: 1}


def test_the_heartbeat_route_answers_pong_with_the_moved_heads(
    ledger: Ledger, make_chat: MakeChat, devices: Devices, route: Route
) -> None:
    # Given alice's phone connected a minute ago, and bob's message since
    chat_id = make_chat("u_alice", "u_bob")
    devices.connect(ALICE, time.time() - 60)
    send(ledger, BOB, chat_id, time.time())
    # When her phone sends heartbeat through the presence function
    answer = route("presence", {"action": "heartbeat"}, user_id="u_alice", connection_id="conn-alice")
    # Then it answers PONG naming the chat and its head
    assert json.loads(answer["body"]) == {"type": "PONG", "heads": {chat_id: 1}}
