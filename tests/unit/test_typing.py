"""typing (logic/typing.py + the presence function): relayed to the other members' online devices,
never stored; pushed at once in small chats, through the delivery queue in large groups; the member
list comes from the warm function's cache; strangers are refused."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.errors import Forbidden
from chat_backend.logic import typing as typing_logic
from chat_backend.logic.audience import MemberListCache
from chat_backend.logic.push import Pusher
from chat_backend.logic.send import Ledger
from chat_backend.logic.typing import relay_typing
from chat_backend.models.client_frames import TypingFrame
from chat_backend.models.events import Caller
from chat_backend.models.queue_payloads import DeliveryEnvelope
from chat_backend.services import services
from chat_backend.wiring import Rate
from tests.unit.conftest import RecordingPoster
from tests.unit.helpers import CountingDdb, MakeChat, add, caller, chats_on, online, online_all, remove

DIRECT_PUSH_MAX_MEMBERS = 256


@dataclass
class Typist:
    """relay_typing as the warm presence function runs it: one member-list cache for the test."""

    store: ChatStore
    pusher: Pusher
    cache: MemberListCache = field(default_factory=MemberListCache)

    def __call__(
        self, who: Caller, chat_id: str, limit: int = DIRECT_PUSH_MAX_MEMBERS, store: ChatStore | None = None
    ) -> None:
        frame = TypingFrame.model_validate({"action": "typing", "chatId": chat_id})
        relay_typing(
            store or self.store,
            services().consent,
            self.cache,
            services().limiter,
            self.pusher,
            who,
            frame,
            limit,
        )


@pytest.fixture
def types(store: ChatStore, pusher: Pusher) -> Typist:
    return Typist(store, pusher)


def posted_to(poster: RecordingPoster) -> set[str]:
    return {connection_id for connection_id, _ in poster.posts}


def test_typing_in_a_small_chat_is_pushed_to_the_other_members_online_devices_only(
    aws_env: Any, registry: ConnectionRegistry, poster: RecordingPoster, make_chat: MakeChat, types: Typist
) -> None:
    # Given alice (phone, laptop) and bob (phone, tablet) online, carol offline, dave online outside
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    online(registry, "u_alice", "d_phone")
    online(registry, "u_alice", "d_laptop")
    bob = {online(registry, "u_bob", "d_phone"), online(registry, "u_bob", "d_tablet")}
    online(registry, "u_dave", "d_phone")
    # When alice types on her phone
    types(caller("u_alice", "d_phone"), chat_id)
    # Then bob's two devices get a TYPING notice naming alice at once: not her own devices, not dave
    assert posted_to(poster) == bob
    assert poster.frames() == [{"type": "TYPING", "chatId": chat_id, "userId": "u_alice"}] * 2
    # And nothing went through the delivery queue, and nothing was stored in the chat
    assert aws_env.receive_all() == []
    assert aws_env.messages(chat_id) == []


def test_a_stranger_typing_is_forbidden_and_relays_nothing(
    aws_env: Any, registry: ConnectionRegistry, poster: RecordingPoster, make_chat: MakeChat, types: Typist
) -> None:
    # Given alice and bob's chat with both online, and mallory outside it
    chat_id = make_chat("u_alice", "u_bob")
    online_all(registry, "u_alice", "u_bob")
    # When mallory sends typing for that chat
    # Then FORBIDDEN, and nothing is pushed or queued
    with pytest.raises(Forbidden):
        types(caller("u_mallory", "d1"), chat_id)
    assert poster.posts == []
    assert aws_env.receive_all() == []


def test_the_member_list_is_read_once_per_membership_version_not_per_keystroke(
    ledger: Ledger, registry: ConnectionRegistry, poster: RecordingPoster, make_chat: MakeChat, types: Typist
) -> None:
    # Given alice's group with bob online, one warm cache, and a store that counts member queries
    chat_id = make_chat("u_alice", "u_bob")
    online(registry, "u_bob", "d_phone")
    carol = online(registry, "u_carol", "d_phone")
    ddb = CountingDdb(types.store.ddb)
    counted = chats_on(types.store, ddb)
    alice = caller("u_alice", "d_phone")
    # When alice types twice
    types(alice, chat_id, store=counted)
    types(alice, chat_id, store=counted)
    # Then bob got both notices, and the members were queried once
    assert [c for c, _ in poster.posts] == ["conn-u_bob-d_phone"] * 2
    assert len(ddb.member_queries) == 1
    # And once carol is added (a new membership version), the next keystroke reads it and reaches her
    add(ledger, caller("u_alice"), chat_id, ["u_carol"])
    poster.posts.clear()
    types(alice, chat_id, store=counted)
    assert len(ddb.member_queries) == 2
    assert posted_to(poster) == {"conn-u_bob-d_phone", carol}


def test_a_removed_member_stops_getting_typing_at_once_despite_the_cache(
    ledger: Ledger, registry: ConnectionRegistry, poster: RecordingPoster, make_chat: MakeChat, types: Typist
) -> None:
    # Given alice's group with bob and carol online, whose member list is already cached
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    online(registry, "u_bob", "d_phone")
    carol = online(registry, "u_carol", "d_phone")
    alice = caller("u_alice", "d_phone")
    types(alice, chat_id)
    poster.posts.clear()
    # When alice removes bob and types again
    remove(ledger, caller("u_alice"), chat_id, ["u_bob"])
    types(alice, chat_id)
    # Then only carol gets it
    assert posted_to(poster) == {carol}
    # And bob, no longer a member, may not relay typing into the chat
    with pytest.raises(Forbidden):
        types(caller("u_bob"), chat_id)


def test_typing_in_a_large_group_goes_through_the_delivery_queue(
    aws_env: Any, registry: ConnectionRegistry, poster: RecordingPoster, group_id: str, types: Typist
) -> None:
    # Given a group of 4, over a direct-push limit of 3, with alice (two devices), bob and carol online
    online(registry, "u_alice", "d_phone")
    online(registry, "u_alice", "d_laptop")
    others = online_all(registry, "u_bob", "u_carol")
    # When alice types on her phone
    types(caller("u_alice", "d_phone"), group_id, limit=3)
    # Then nothing is posted directly: one envelope on the delivery queue names bob's and carol's
    # devices (none of alice's), with the TYPING notice
    assert poster.posts == []
    [queued] = aws_env.receive_all()
    envelope = DeliveryEnvelope.model_validate_json(queued["Body"])
    assert {r.connection_id for r in envelope.recipients} == others
    assert json.loads(envelope.frame) == {"type": "TYPING", "chatId": group_id, "userId": "u_alice"}
    assert aws_env.messages(group_id) == []


def test_a_large_groups_typing_reaches_a_bounded_number_of_devices_a_second(
    aws_env: Any, registry: ConnectionRegistry, make_chat: MakeChat, types: Typist, monkeypatch: Any
) -> None:
    # Given a group over the direct-push limit with 6 members online, and a typing budget of 8
    # devices a second (burst 8) for the chat
    monkeypatch.setattr(typing_logic, "TYPING_FANOUT", Rate(8, 8))
    users = [f"u_{n}" for n in range(6)]
    chat_id = make_chat(*users)
    online_all(registry, *users)
    # When three members type at once (5 recipient devices each)
    for user in users[:3]:
        types(caller(user), chat_id, limit=3)
    # Then only the first notice went out (5 of the 8); the others would have passed the budget
    queued = [DeliveryEnvelope.model_validate_json(m["Body"]) for m in aws_env.receive_all()]
    assert [json.loads(e.frame)["userId"] for e in queued] == ["u_0"]
