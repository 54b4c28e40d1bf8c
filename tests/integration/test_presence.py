"""Presence over the local stack, through the SDK: subscribe answers at once, ONLINE / OFFLINE are
pushed to subscribers who share a chat (OFFLINE after the grace), strangers get FORBIDDEN and
nothing else, flapping does not storm, and a user is ONLINE while any device is."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from chat_backend.wiring import PRESENCE_GRACE_S

Connect = Callable[..., Any]
# OFFLINE arrives after the grace plus the settle queue's extra second, the pollers and the push.
OFFLINE_WITHIN_S = PRESENCE_GRACE_S + 6


async def presence_frames(
    client: Any, wait_s: float, until_status: str | None = None, then_s: float = 1.5
) -> list[dict[str, Any]]:
    """Every PRESENCE frame the client gets within `wait_s`, or until one with `until_status` and
    `then_s` more (anything after it would be a frame too many)."""
    frames: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + wait_s
    while (left := end - loop.time()) > 0:
        try:
            frames.append(await client.next_frame("PRESENCE", timeout=left))
        except TimeoutError:
            break
        if until_status is not None and frames[-1]["status"] == until_status:
            end = min(end, loop.time() + then_s)
    return frames


async def pair(connect: Connect, new_user: Callable[[str], str]) -> tuple[str, str, Any]:
    """Bob online, in a direct chat alice created (so her presence is open to him: a chat he made
    would not open it) from a device that has left since."""
    alice_id, bob_id = new_user("alice"), new_user("bob")
    alice = await connect(alice_id, "setup")
    await alice.create_chat("direct", [bob_id])
    await alice.close()
    return alice_id, bob_id, await connect(bob_id)


async def watch_until_offline(bob: Any, alice_id: str) -> dict[str, Any]:
    """Bob subscribes to alice and waits until she reads OFFLINE (her setup device's grace)."""
    await bob.subscribe_presence([alice_id])
    frames = await presence_frames(bob, OFFLINE_WITHIN_S + 5, until_status="OFFLINE", then_s=0)
    assert frames and frames[-1]["status"] == "OFFLINE", frames
    return frames[-1]


async def test_subscribe_answers_the_current_status_then_pushes_online_and_offline(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given bob in a chat with alice, who has left
    alice_id, _, bob = await pair(connect, new_user)
    # When bob subscribes to her, Then he is told her status at once, and OFFLINE with when she
    # was last seen once her grace is over
    offline_before = await watch_until_offline(bob, alice_id)
    assert offline_before["lastSeen"] is not None
    # And when she connects, he is pushed ONLINE
    alice = await connect(alice_id)
    online = await bob.next_frame("PRESENCE", timeout=5)
    assert (online["userId"], online["status"]) == (alice_id, "ONLINE")
    # And when she leaves, he is pushed OFFLINE after the grace, with when she was last seen
    await alice.close()
    left_at = asyncio.get_running_loop().time()
    offline = await bob.next_frame("PRESENCE", timeout=OFFLINE_WITHIN_S)
    print(f"OFFLINE pushed {asyncio.get_running_loop().time() - left_at:.1f} s after the last device left")
    assert (offline["userId"], offline["status"]) == (alice_id, "OFFLINE")
    assert offline["lastSeen"] >= online["lastSeen"]


async def test_a_strangers_subscription_is_forbidden_and_gets_no_pushes(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice online, and mallory who shares no chat with her
    alice_id, _, _bob = await pair(connect, new_user)
    mallory = await connect(new_user("mallory"))
    # When mallory subscribes to alice, and to a user who does not exist
    await mallory.subscribe_presence([alice_id])
    await mallory.subscribe_presence([new_user("nobody")])
    # Then both frames get the same FORBIDDEN, and no PRESENCE
    first, second = await mallory.errors.get(), await mallory.errors.get()
    assert first["code"] == second["code"] == "FORBIDDEN"
    assert first["message"] == second["message"]
    # And alice coming online pushes nothing to mallory
    await connect(alice_id)
    assert await presence_frames(mallory, 2) == []


async def test_a_flapping_user_yields_one_online_and_one_offline(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given bob subscribed to alice, who is offline
    alice_id, _, bob = await pair(connect, new_user)
    await watch_until_offline(bob, alice_id)
    # When alice connects and disconnects 10 times quickly, then stays away
    for _ in range(10):
        alice = await connect(alice_id)
        await alice.close()
    # Then bob sees at most one ONLINE and one OFFLINE, ending OFFLINE
    frames = await presence_frames(bob, OFFLINE_WITHIN_S, until_status="OFFLINE")
    statuses = [f["status"] for f in frames]
    assert statuses.count("ONLINE") <= 1
    assert statuses.count("OFFLINE") == 1
    assert statuses[-1] == "OFFLINE"


async def test_offline_only_when_the_last_device_leaves(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice online on her phone and laptop, watched by bob
    alice_id, _, bob = await pair(connect, new_user)
    phone, laptop = await connect(alice_id, "phone"), await connect(alice_id, "laptop")
    await bob.subscribe_presence([alice_id])
    assert (await bob.next_frame("PRESENCE", timeout=5))["status"] == "ONLINE"
    # When the phone leaves, then she is still ONLINE past the grace: nothing is pushed
    await phone.close()
    assert await presence_frames(bob, PRESENCE_GRACE_S + 3) == []
    # And when the laptop leaves too, OFFLINE is pushed after the grace
    await laptop.close()
    offline = await bob.next_frame("PRESENCE", timeout=OFFLINE_WITHIN_S)
    assert (offline["userId"], offline["status"]) == (alice_id, "OFFLINE")


@pytest.mark.parametrize("renew", ["heartbeat", "resubscribe"])
async def test_a_subscription_is_renewed_by_heartbeat_or_subscribing_again(
    connect: Connect, new_user: Callable[[str], str], renew: str
) -> None:
    # Given bob subscribed to alice, who is offline
    alice_id, _, bob = await pair(connect, new_user)
    await watch_until_offline(bob, alice_id)
    # When he renews it
    if renew == "heartbeat":
        await bob.send_frame({"action": "heartbeat"})
    else:
        await bob.subscribe_presence([alice_id])
        await bob.next_frame("PRESENCE", timeout=5)
    # Then pushes still reach him
    await connect(alice_id)
    assert (await bob.next_frame("PRESENCE", timeout=5))["status"] == "ONLINE"
