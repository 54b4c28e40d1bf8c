"""Keys over the local stack, through the SDK: two devices of bob publish, alice (in a chat with
bob) fetches both with distinct one-time prekeys, each handed out once; a stranger is FORBIDDEN."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

Connect = Callable[..., Any]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def signed(device: str) -> dict[str, Any]:
    return {"keyId": 1, "publicKey": b64(f"spk-{device}"), "signature": b64(f"sig-{device}")}


def one_time(device: str, key_ids: range) -> list[dict[str, Any]]:
    return [{"keyId": k, "publicKey": b64(f"otpk-{device}-{k}")} for k in key_ids]


async def test_devices_publish_and_a_chat_partner_fetches_each_one_time_prekey_once(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    alice_id, bob_id = new_user("alice"), new_user("bob")
    # Given bob's two devices, with 2 and 1 one-time prekeys, and a chat between alice and bob
    phone, laptop = await connect(bob_id, "d_phone"), await connect(bob_id, "d_laptop")
    published = await phone.publish_keys(b64("ik-phone"), signed("d_phone"), one_time("d_phone", range(2)))
    assert published == {"type": "KEYS_PUBLISHED", "oneTimePreKeys": 2}
    published = await laptop.publish_keys(
        b64("ik-laptop"), signed("d_laptop"), one_time("d_laptop", range(1))
    )
    assert published == {"type": "KEYS_PUBLISHED", "oneTimePreKeys": 1}
    alice = await connect(alice_id)
    await alice.create_chat("direct", [bob_id])

    # When alice fetches bob's keys
    keys = await alice.fetch_keys(bob_id)
    # Then she gets both devices, each with its keys and a one-time prekey
    assert (keys["type"], keys["userId"]) == ("KEYS", bob_id)
    by_device = {d["deviceId"]: d for d in keys["devices"]}
    assert set(by_device) == {"d_phone", "d_laptop"}
    assert by_device["d_phone"]["identityKey"] == b64("ik-phone")
    assert by_device["d_laptop"]["signedPreKey"] == signed("d_laptop")
    assert by_device["d_laptop"]["oneTimePreKey"] == {"keyId": 0, "publicKey": b64("otpk-d_laptop-0")}
    first_phone_key = by_device["d_phone"]["oneTimePreKey"]

    # And a second fetch gets the phone's other key, and none for the laptop (used up)
    again = {d["deviceId"]: d for d in (await alice.fetch_keys(bob_id))["devices"]}
    assert again["d_laptop"]["oneTimePreKey"] is None
    assert {first_phone_key["keyId"], again["d_phone"]["oneTimePreKey"]["keyId"]} == {0, 1}

    # And bob's phone, asking for its own user's keys, sees only the laptop
    own = await phone.fetch_keys(bob_id)
    assert [d["deviceId"] for d in own["devices"]] == ["d_laptop"]


async def test_anyone_may_fetch_keys_but_a_blocked_user_gets_no_one_time_prekey(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given bob's device with two one-time prekeys; carol and mallory share no chat with him, and
    # bob blocks mallory
    bob_id, carol_id, mallory_id = new_user("bob"), new_user("carol"), new_user("mallory")
    bob = await connect(bob_id)
    await bob.publish_keys(b64("ik"), signed("d1"), one_time("d1", range(2)))
    await bob.block(mallory_id)
    carol, mallory = await connect(carol_id), await connect(mallory_id)
    # When each fetches his keys (a first encrypted message to a new contact needs them)
    for_carol = await carol.fetch_keys(bob_id)
    for_mallory = await mallory.fetch_keys(bob_id)
    # Then both get his device; carol with a one-time prekey, mallory with the null of a device
    # that has none left, so she cannot tell she is blocked
    assert for_carol["devices"][0]["oneTimePreKey"] is not None
    assert for_mallory["devices"][0]["oneTimePreKey"] is None
    assert for_mallory["devices"][0]["identityKey"] == for_carol["devices"][0]["identityKey"]
    # And bob still has the prekey mallory did not get
    republished = await bob.publish_keys(b64("ik"), signed("d1"))
    assert republished["oneTimePreKeys"] == 1


async def test_a_bad_publish_frame_is_bad_request(connect: Connect, new_user: Callable[[str], str]) -> None:
    bob = await connect(new_user("bob"))
    await bob.send_frame(
        {"action": "publishKeys", "identityKey": "not base64!", "signedPreKey": signed("d1")}
    )
    error = await asyncio.wait_for(bob.errors.get(), 5)
    assert (error["type"], error["code"]) == ("ERROR", "BAD_REQUEST")
