"""Helpers of the integration scenarios, which tests/e2e also runs against a deployed stage: plain
functions over the `connect` and `new_user` fixtures both directories' conftest.py provide."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from chat_client import ChatClient

Connect = Callable[..., Any]  # connect(user, device="d1", **ChatClient options) -> a connected client
NewUser = Callable[[str], str]


class DirectChat(NamedTuple):
    alice_id: str
    bob_id: str
    alice: ChatClient
    bob: ChatClient
    chat_id: str


async def direct_chat(connect: Connect, new_user: NewUser) -> DirectChat:
    """alice and bob (new users), each connected on one device, and the direct chat alice made."""
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice, bob = await connect(alice_id), await connect(bob_id)
    chat_id = (await alice.create_chat("direct", [bob_id]))["chatId"]
    return DirectChat(alice_id, bob_id, alice, bob, chat_id)


@asynccontextmanager
async def connecting(
    client_of: Callable[..., ChatClient],
) -> AsyncIterator[Callable[..., Awaitable[ChatClient]]]:
    """What the `connect` fixtures give: connect(user, device="d1", **options) connects the client
    `client_of(user, device, **options)` builds; every one is closed at the end."""
    clients: list[ChatClient] = []

    async def connect(user: str, device: str = "d1", **options: Any) -> ChatClient:
        client = client_of(user, device, **options)
        await client.connect()
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()
