"""typing (logic/typing.py + the presence function): relayed to the other members' online devices,
never stored; pushed at once in small chats, through the delivery queue in large groups; the member
list comes from the warm function's cache; strangers are refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue
from chat_backend.errors import Forbidden
from chat_backend.logic.audience import MemberListCache
from chat_backend.logic.members import add_members, remove_members
from chat_backend.logic.push import Pusher
from chat_backend.logic.typing import relay_typing
from chat_backend.models import AddMembersFrame, Caller, DeliveryEnvelope, RemoveMembersFrame, TypingFrame
from chat_backend.services import services

DIRECT_PUSH_MAX_MEMBERS = 256


@pytest.fixture
def pusher(poster: Any, registry: ConnectionRegistry, queue: DeliveryQueue, io_pool: Executor) -> Pusher:
    return Pusher(poster, registry, queue, io_pool)


class CountingDdb:
    """Counts the queries of a chat's MEMBER# items."""

    def __init__(self, ddb: Any) -> None:
        self.ddb = ddb
        self.member_queries = 0

    def query(self, **kwargs: Any) -> Any:
        if kwargs.get("ExpressionAttributeValues", {}).get(":m") == {"S": "MEMBER#"}:
            self.member_queries += 1
        return self.ddb.query(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ddb, name)


def online(registry: ConnectionRegistry, user_id: str, device_id: str) -> str:
    connection_id = f"conn-{user_id}-{device_id}"
    registry.register(user_id, device_id, connection_id, "2026-11-28T03:00:00.000Z", 2_000_000_000)
    return connection_id


def typing_in(chat_id: str) -> TypingFrame:
    return TypingFrame.model_validate({"action": "typing", "chatId": chat_id})


def posted_to(poster: Any) -> set[str]:
    return {connection_id for connection_id, _ in poster.posts}


def test_typing_in_a_small_chat_is_pushed_to_the_other_members_online_devices_only(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    pusher: Pusher,
    poster: Any,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
) -> None:
    # Given alice (phone, laptop) and bob (phone, tablet) online, carol offline, dave online outside
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    online(registry, "u_alice", "d_phone")
    online(registry, "u_alice", "d_laptop")
    bob = {online(registry, "u_bob", "d_phone"), online(registry, "u_bob", "d_tablet")}
    online(registry, "u_dave", "d_phone")
    # When alice types on her phone
    relay_typing(
        store,
        MemberListCache(),
        pusher,
        make_caller("u_alice", "d_phone"),
        typing_in(chat_id),
        DIRECT_PUSH_MAX_MEMBERS,
    )
    # Then bob's two devices get a TYPING notice naming alice at once: not her own devices, not dave
    assert posted_to(poster) == bob
    assert poster.frames() == [{"type": "TYPING", "chatId": chat_id, "userId": "u_alice"}] * 2
    # And nothing went through the delivery queue, and nothing was stored in the chat
    assert aws_env.receive_all() == []
    assert aws_env.messages(chat_id) == []


def test_a_stranger_typing_is_forbidden_and_relays_nothing(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    pusher: Pusher,
    poster: Any,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
) -> None:
    # Given alice and bob's chat with both online, and mallory outside it
    chat_id = make_chat("u_alice", "u_bob")
    online(registry, "u_alice", "d_phone")
    online(registry, "u_bob", "d_phone")
    # When mallory sends typing for that chat
    # Then FORBIDDEN, and nothing is pushed or queued
    with pytest.raises(Forbidden):
        relay_typing(
            store,
            MemberListCache(),
            pusher,
            make_caller("u_mallory", "d1"),
            typing_in(chat_id),
            DIRECT_PUSH_MAX_MEMBERS,
        )
    assert poster.posts == []
    assert aws_env.receive_all() == []


def test_the_member_list_is_read_once_per_membership_version_not_per_keystroke(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    pusher: Pusher,
    poster: Any,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
) -> None:
    # Given alice's group with bob online, one warm cache, and a store that counts member queries
    chat_id = make_chat("u_alice", "u_bob")
    online(registry, "u_bob", "d_phone")
    carol = online(registry, "u_carol", "d_phone")
    ddb = CountingDdb(store.ddb)
    counted = ChatStore(store.chats_table, store.messages_table, ddb, store.receipts_table)
    cache = MemberListCache()
    alice = make_caller("u_alice", "d_phone")

    def keystroke() -> None:
        relay_typing(counted, cache, pusher, alice, typing_in(chat_id), DIRECT_PUSH_MAX_MEMBERS)

    # When alice types twice
    keystroke()
    keystroke()
    # Then bob got both notices, and the members were queried once
    assert [c for c, _ in poster.posts] == ["conn-u_bob-d_phone"] * 2
    assert ddb.member_queries == 1
    # And once carol is added (a new membership version), the next keystroke reads it and reaches her
    frame = AddMembersFrame.model_validate(
        {"action": "addMembers", "requestId": "r", "chatId": chat_id, "members": ["u_carol"]}
    )
    add_members(services().ledger, make_caller("u_alice"), frame, 5.0)
    poster.posts.clear()
    keystroke()
    assert ddb.member_queries == 2
    assert posted_to(poster) == {"conn-u_bob-d_phone", carol}


def test_a_removed_member_stops_getting_typing_at_once_despite_the_cache(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    pusher: Pusher,
    poster: Any,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
) -> None:
    # Given alice's group with bob and carol online, whose member list is already cached
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    online(registry, "u_bob", "d_phone")
    carol = online(registry, "u_carol", "d_phone")
    cache = MemberListCache()
    alice = make_caller("u_alice", "d_phone")
    relay_typing(store, cache, pusher, alice, typing_in(chat_id), DIRECT_PUSH_MAX_MEMBERS)
    poster.posts.clear()
    # When alice removes bob and types again
    frame = RemoveMembersFrame.model_validate(
        {"action": "removeMembers", "requestId": "r", "chatId": chat_id, "members": ["u_bob"]}
    )
    remove_members(services().ledger, make_caller("u_alice"), frame, 5.0)
    relay_typing(store, cache, pusher, alice, typing_in(chat_id), DIRECT_PUSH_MAX_MEMBERS)
    # Then only carol gets it
    assert posted_to(poster) == {carol}
    # And bob, no longer a member, may not relay typing into the chat
    with pytest.raises(Forbidden):
        relay_typing(store, cache, pusher, make_caller("u_bob"), typing_in(chat_id), DIRECT_PUSH_MAX_MEMBERS)


def test_typing_in_a_large_group_goes_through_the_delivery_queue(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    pusher: Pusher,
    poster: Any,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
) -> None:
    # Given a group of 4, over a direct-push limit of 3, with alice (two devices), bob and carol online
    chat_id = make_chat("u_alice", "u_bob", "u_carol", "u_dave")
    online(registry, "u_alice", "d_phone")
    online(registry, "u_alice", "d_laptop")
    others = {online(registry, "u_bob", "d_phone"), online(registry, "u_carol", "d_phone")}
    # When alice types on her phone
    relay_typing(store, MemberListCache(), pusher, make_caller("u_alice", "d_phone"), typing_in(chat_id), 3)
    # Then nothing is posted directly: one envelope on the delivery queue names bob's and carol's
    # devices (none of alice's), with the TYPING notice
    assert poster.posts == []
    [queued] = aws_env.receive_all()
    envelope = DeliveryEnvelope.model_validate_json(queued["Body"])
    assert {r.connection_id for r in envelope.recipients} == others
    assert json.loads(envelope.frame) == {"type": "TYPING", "chatId": chat_id, "userId": "u_alice"}
    assert aws_env.messages(chat_id) == []
