"""queryDevices and claimKeys (logic/keys.py): device lists without claims, one-time prekeys of
many devices in one frame under fetchKeys' rules; keys as vodozemac publishes them (unpadded
base64, an ed25519 signing key)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import vodozemac

from chat_client.crypto.olm_device import OlmDevice
from chat_client.crypto.store import DeviceStore, new_store_key
from tests.unit.test_keys import Handler, call, publish_frame


@pytest.fixture
def keys_handler(aws_env: Any, handler_of: Callable[[str], Handler]) -> Handler:
    return handler_of("keys")


def test_an_olm_device_publishes_its_keys_and_others_query_and_verify_them(
    tmp_path: Path, keys_handler: Handler, lambda_context: Any
) -> None:
    # Given bob's SDK device publishing the keys vodozemac made (unpadded base64, a signing key)
    with DeviceStore(tmp_path, "u_bob", "d_phone", new_store_key()) as store:
        bob = OlmDevice(store)
        frame = bob.publish_keys_frame(3)
        # When published, Then the server takes them
        assert call(keys_handler, lambda_context, frame, "u_bob") == {
            "type": "KEYS_PUBLISHED",
            "oneTimePreKeys": 3,
        }
        # When alice queries bob's devices
        listed = call(
            keys_handler,
            lambda_context,
            {"action": "queryDevices", "requestId": "q", "userIds": ["u_bob", "u_nobody"]},
            "u_alice",
        )
        # Then she gets his device's keys, nothing claimed, and can verify his signed prekey
        [device] = listed["devices"]
        assert (listed["type"], listed["requestId"]) == ("DEVICES", "q")
        assert (device["userId"], device["deviceId"], device["identityKey"]) == (
            "u_bob",
            "d_phone",
            bob.identity_key,
        )
        spk = device["signedPreKey"]
        vodozemac.Ed25519PublicKey.from_base64(device["signingKey"]).verify_signature(
            spk["publicKey"].encode(), vodozemac.Ed25519Signature.from_base64(spk["signature"])
        )
        again = call(
            keys_handler,
            lambda_context,
            {"action": "fetchKeys", "requestId": "f", "userId": "u_bob"},
            "u_carol",
        )
        assert again["devices"][0]["oneTimePreKey"] is not None  # the query claimed none of the 3


def test_claim_keys_takes_one_prekey_of_each_device_once_and_none_for_a_blocker(
    keys_handler: Handler, lambda_context: Any, route: Callable[..., dict[str, Any]]
) -> None:
    # Given bob (two devices, one prekey each) and dave (who blocks alice)
    for user, device in (("u_bob", "d_phone"), ("u_bob", "d_laptop"), ("u_dave", "d_phone")):
        call(keys_handler, lambda_context, publish_frame(device, [1]), user, device)
    route("consent", {"action": "block", "requestId": "b", "userId": "u_alice"}, user_id="u_dave")
    devices = [
        {"userId": "u_bob", "deviceId": "d_phone"},
        {"userId": "u_bob", "deviceId": "d_laptop"},
        {"userId": "u_dave", "deviceId": "d_phone"},
    ]
    # When alice claims all three in one frame
    claimed = call(
        keys_handler, lambda_context, {"action": "claimKeys", "requestId": "c", "devices": devices}, "u_alice"
    )
    keys = {(k["userId"], k["deviceId"]): k["oneTimePreKey"] for k in claimed["keys"]}
    # Then she gets each of bob's devices' prekey, and none of dave's (the same null as none left)
    assert keys[("u_bob", "d_phone")] is not None and keys[("u_bob", "d_laptop")] is not None
    assert keys[("u_dave", "d_phone")] is None
    # And a second claim finds bob's used up
    second = call(
        keys_handler,
        lambda_context,
        {"action": "claimKeys", "requestId": "c2", "devices": devices[:2]},
        "u_carol",
    )
    assert [k["oneTimePreKey"] for k in second["keys"]] == [None, None]
