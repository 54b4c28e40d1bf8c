"""Mobile push over the local stack (logic/notifications.py; moto stands in for SNS and every
notification it would send lands in the stack's push log): a member with no device connected is
notified with the chat id and a count, an online one is not, a busy chat is coalesced, and a token
the platform refuses is forgotten."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from chaos.state import REGION
from chat_client import ChatServerError
from local_stack.child import RunningStack
from local_stack.push_log import read

Connect = Callable[..., Any]


def notifications_for(stack: RunningStack, token: str) -> list[dict[str, Any]]:
    return [n for n in read(stack.emulator_urls["push-log"]) if n["token"] == token]


async def wait_for(stack: RunningStack, token: str, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    end = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < end:
        found = notifications_for(stack, token)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{token}: {len(notifications_for(stack, token))} notifications, not {count}")


def aws(stack: RunningStack, service: str, emulator: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack.emulator_urls[emulator],
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


async def test_offline_members_are_notified_with_the_chat_and_a_count_and_online_ones_are_not(
    stack: RunningStack, connect: Connect, new_user: Callable[[str], str]
) -> None:
    alice_id, bob_id, carol_id, dave_id = (new_user(n) for n in ("alice", "bob", "carol", "dave"))
    tokens = {user: f"fcm-token-{user}" for user in (alice_id, bob_id, carol_id, dave_id)}
    # Given alice, bob, carol and dave in a group, each device registered for push (bob on APNs)
    clients = {user: await connect(user) for user in tokens}
    for user, client in clients.items():
        platform = "apns" if user == bob_id else "fcm"
        assert (await client.register_push(platform, tokens[user]))["type"] == "OK"
    group = (await clients[alice_id].create_chat("group", [bob_id, carol_id, dave_id]))["chatId"]
    # And dave's token no longer accepted by the platform (the app was uninstalled)
    sns = aws(stack, "sns", "moto")
    endpoints = [
        e
        for app in sns.list_platform_applications()["PlatformApplications"]
        for e in sns.list_endpoints_by_platform_application(
            PlatformApplicationArn=app["PlatformApplicationArn"]
        )["Endpoints"]
    ]
    [daves] = [e["EndpointArn"] for e in endpoints if e["Attributes"]["Token"] == tokens[dave_id]]
    sns.set_endpoint_attributes(EndpointArn=daves, Attributes={"Enabled": "false"})
    # And bob and dave offline, carol online
    await clients[bob_id].close()
    await clients[dave_id].close()
    await asyncio.sleep(1)  # their $disconnect done (a device still closing may yet be pushed to)

    # When alice sends a message
    ack = await clients[alice_id].send(group, b"\x00ciphertext only")
    # Then bob's phone is notified through APNs with the chat id and a count of 1, nothing more
    [bob_note] = await wait_for(stack, tokens[bob_id], 1)
    assert bob_note["platform"] == "APNS"
    body = json.loads(bob_note["message"]["APNS"])
    assert (body["chatId"], body["count"]) == (group, 1)
    assert "ciphertext" not in str(bob_note) and ack.server_msg_id not in str(bob_note)
    # And dave's refused token is forgotten: his registration and endpoint are gone
    table = next(
        t for t in aws(stack, "dynamodb", "dynamodb-local").list_tables()["TableNames"] if "push" in t
    )
    for _ in range(50):
        item = aws(stack, "dynamodb", "dynamodb-local").get_item(TableName=table, Key={"key": {"S": dave_id}})
        if not item.get("Item", {}).get("devices", {}).get("M"):
            break
        await asyncio.sleep(0.2)
    assert not item["Item"]["devices"]["M"]
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.get_endpoint_attributes(EndpointArn=daves)

    # When alice sends twice more at once (a busy chat)
    await clients[alice_id].send(group, b"two")
    await clients[alice_id].send(group, b"three")
    await asyncio.sleep(2)
    # Then bob is not notified again within his window (the next notification will count them),
    # and carol, online, and alice, the sender, were never notified
    assert len(notifications_for(stack, tokens[bob_id])) == 1
    assert notifications_for(stack, tokens[carol_id]) == []
    assert notifications_for(stack, tokens[alice_id]) == []


async def test_a_bad_push_registration_is_refused_and_unregistering_stops_notifications(
    stack: RunningStack, connect: Connect, new_user: Callable[[str], str]
) -> None:
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice, bob = await connect(alice_id), await connect(bob_id)
    # When bob registers an unknown platform or a token with spaces, Then BAD_REQUEST
    for frame in ({"platform": "sms", "token": "t"}, {"platform": "fcm", "token": "has space"}):
        with pytest.raises(ChatServerError) as refused:
            await bob.request({"action": "registerPush", **frame})
        assert refused.value.code == "BAD_REQUEST"
    # Given bob registered, then unregistered, and offline
    token = f"fcm-{bob_id}"
    await bob.register_push("fcm", token)
    assert (await bob.unregister_push())["type"] == "OK"
    await bob.close()
    await asyncio.sleep(1)
    # When alice sends him a message, Then no notification is sent
    chat = (await alice.create_chat("direct", [bob_id]))["chatId"]
    await alice.send(chat, b"hello")
    await asyncio.sleep(2)
    assert notifications_for(stack, token) == []
