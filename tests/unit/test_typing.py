"""typing (logic/typing.py + the presence function): relayed to the other members' online devices,
never stored; strangers are refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue
from chat_backend.errors import Forbidden
from chat_backend.logic.typing import relay_typing
from chat_backend.models import Caller, DeliveryEnvelope, TypingFrame


def online(registry: ConnectionRegistry, user_id: str, device_id: str) -> str:
    connection_id = f"conn-{user_id}-{device_id}"
    registry.register(user_id, device_id, connection_id, "2026-11-28T03:00:00.000Z", 2_000_000_000)
    return connection_id


def typing_in(chat_id: str) -> TypingFrame:
    return TypingFrame.model_validate({"action": "typing", "chatId": chat_id})


def test_typing_reaches_every_online_device_of_the_other_members_only(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    make_chat: Callable[..., str],
) -> None:
    # Given alice (phone, laptop) and bob (phone, tablet) online, carol offline, dave online outside the chat
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    online(registry, "u_alice", "d_phone")
    online(registry, "u_alice", "d_laptop")
    bob = {online(registry, "u_bob", "d_phone"), online(registry, "u_bob", "d_tablet")}
    online(registry, "u_dave", "d_phone")
    # When alice types on her phone
    relay_typing(
        store,
        registry,
        queue,
        Caller(user_id="u_alice", device_id="d_phone", connection_id="c"),
        typing_in(chat_id),
    )
    # Then one TYPING notice naming alice goes, in the chat's FIFO group, to bob's two devices only
    [queued] = aws_env.receive_all()
    assert queued["Attributes"]["MessageGroupId"] == chat_id
    envelope = DeliveryEnvelope.model_validate_json(queued["Body"])
    assert {r.connection_id for r in envelope.recipients} == bob
    assert json.loads(envelope.frame) == {"type": "TYPING", "chatId": chat_id, "userId": "u_alice"}
    # And nothing was stored in the chat
    assert aws_env.messages(chat_id) == []


def test_a_stranger_typing_is_forbidden_and_relays_nothing(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    make_chat: Callable[..., str],
) -> None:
    # Given alice and bob's chat with bob online, and mallory outside it
    chat_id = make_chat("u_alice", "u_bob")
    online(registry, "u_bob", "d_phone")
    # When mallory sends typing for that chat, Then FORBIDDEN and nothing is queued
    with pytest.raises(Forbidden):
        relay_typing(
            store,
            registry,
            queue,
            Caller(user_id="u_mallory", device_id="d1", connection_id="c"),
            typing_in(chat_id),
        )
    assert aws_env.receive_all() == []
