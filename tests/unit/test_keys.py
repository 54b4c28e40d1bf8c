"""keys (logic/keys.py, dal/key_store.py, the keys function): devices publish public keys; anyone
fetches them (a first message to a new contact needs them), each one-time prekey handed out once
(null when none are left, to a user the owner blocks, and past a claimer's budget: the same null);
bad frames are BAD_REQUEST with nothing written."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chat_backend.dal.key_store import KeyStore, PreKey, SignedPreKeyRecord
from chat_backend.services import services
from tests.unit.conftest import AwsEnv
from tests.unit.helpers import LockedDdb
from tests.unit.lambda_events import message_event

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def publish_frame(device: str, key_ids: range | list[int]) -> dict[str, Any]:
    return {
        "action": "publishKeys",
        "identityKey": b64(f"ik-{device}"),
        "signedPreKey": {"keyId": 1, "publicKey": b64(f"spk-{device}"), "signature": b64(f"sig-{device}")},
        "oneTimePreKeys": [{"keyId": k, "publicKey": b64(f"otpk-{device}-{k}")} for k in key_ids],
    }


def call(handler: Handler, ctx: Any, frame: dict[str, Any], user: str, device: str = "d_phone") -> Any:
    resp = handler(message_event(frame, user_id=user, device_id=device), ctx)
    return json.loads(resp["body"])


@pytest.fixture
def keys_handler(aws_env: AwsEnv, handler_of: Callable[[str], Handler]) -> Handler:
    return handler_of("keys")


def fetch(
    handler: Handler, ctx: Any, caller: str, user: str, rid: str = "r1", device: str = "d_phone"
) -> Any:
    return call(handler, ctx, {"action": "fetchKeys", "requestId": rid, "userId": user}, caller, device)


def test_publish_then_fetch_gives_every_device_with_one_one_time_prekey(
    keys_handler: Handler, lambda_context: Any, make_chat: Callable[..., str]
) -> None:
    make_chat("u_alice", "u_bob")
    assert call(keys_handler, lambda_context, publish_frame("d_phone", range(3)), "u_bob", "d_phone") == {
        "type": "KEYS_PUBLISHED",
        "oneTimePreKeys": 3,
    }
    answer = call(keys_handler, lambda_context, publish_frame("d_laptop", [7]), "u_bob", "d_laptop")
    assert answer == {"type": "KEYS_PUBLISHED", "oneTimePreKeys": 1}

    keys = fetch(keys_handler, lambda_context, "u_alice", "u_bob", rid="r9")
    assert (keys["type"], keys["requestId"], keys["userId"]) == ("KEYS", "r9", "u_bob")
    by_device = {d["deviceId"]: d for d in keys["devices"]}
    assert set(by_device) == {"d_phone", "d_laptop"}
    assert by_device["d_laptop"] == {
        "deviceId": "d_laptop",
        "identityKey": b64("ik-d_laptop"),
        "signedPreKey": {"keyId": 1, "publicKey": b64("spk-d_laptop"), "signature": b64("sig-d_laptop")},
        "oneTimePreKey": {"keyId": 7, "publicKey": b64("otpk-d_laptop-7")},
    }
    phone_key = by_device["d_phone"]["oneTimePreKey"]
    assert phone_key["publicKey"] == b64(f"otpk-d_phone-{phone_key['keyId']}")
    # And the count goes down by the one handed out
    assert services().keys.count_one_time("u_bob", "d_phone") == 2


def test_a_top_up_adds_one_time_prekeys_and_overwrites_the_same_key_id(
    keys_handler: Handler, lambda_context: Any, make_chat: Callable[..., str]
) -> None:
    # Given bob's phone published keys 1 and 2
    make_chat("u_alice", "u_bob")
    call(keys_handler, lambda_context, publish_frame("d_phone", [1, 2]), "u_bob")
    # When it publishes again under the same identity key, with keys 2 (new bytes) and 3
    again = publish_frame("d_phone", [2, 3])
    again["oneTimePreKeys"][0]["publicKey"] = b64("replaced")
    assert call(keys_handler, lambda_context, again, "u_bob")["oneTimePreKeys"] == 3
    # Then alice is handed 1, the new 2 and 3, then none
    handed = [
        fetch(keys_handler, lambda_context, "u_alice", "u_bob", rid=f"r{i}")["devices"][0]["oneTimePreKey"]
        for i in range(4)
    ]
    assert handed[3] is None
    assert sorted((k["keyId"], k["publicKey"]) for k in handed[:3]) == [
        (1, b64("otpk-d_phone-1")),
        (2, b64("replaced")),
        (3, b64("otpk-d_phone-3")),
    ]


def test_a_device_back_with_a_new_identity_key_loses_the_old_one_time_prekeys(
    keys_handler: Handler, lambda_context: Any, make_chat: Callable[..., str]
) -> None:
    # Given bob's phone published keys 1 to 3
    make_chat("u_alice", "u_bob")
    call(keys_handler, lambda_context, publish_frame("d_phone", [1, 2, 3]), "u_bob")
    # When it comes back reinstalled: a new identity key, with its own keys 1 and 7
    again = publish_frame("d_phone", [1, 7])
    again["identityKey"] = b64("ik-new")
    again["oneTimePreKeys"][0]["publicKey"] = b64("new-1")
    assert call(keys_handler, lambda_context, again, "u_bob")["oneTimePreKeys"] == 2
    # Then alice is handed only the new account's keys (a session on an old one could never open)
    handed = []
    for i in range(3):
        (device,) = fetch(keys_handler, lambda_context, "u_alice", "u_bob", rid=f"r{i}")["devices"]
        assert device["identityKey"] == b64("ik-new")
        handed.append(device["oneTimePreKey"])
    assert handed[2] is None
    assert sorted((k["keyId"], k["publicKey"]) for k in handed[:2]) == [
        (1, b64("new-1")),
        (7, b64("otpk-d_phone-7")),
    ]


def test_each_one_time_prekey_is_handed_out_once_then_null(
    keys_handler: Handler, lambda_context: Any, make_chat: Callable[..., str]
) -> None:
    make_chat("u_alice", "u_bob", "u_carol")
    call(keys_handler, lambda_context, publish_frame("d_phone", [10, 11]), "u_bob")
    first = fetch(keys_handler, lambda_context, "u_alice", "u_bob")["devices"][0]["oneTimePreKey"]
    second = fetch(keys_handler, lambda_context, "u_carol", "u_bob")["devices"][0]["oneTimePreKey"]
    assert {first["keyId"], second["keyId"]} == {10, 11}
    # Exhausted: the device is still there, with its signed prekey and no one-time prekey
    (third,) = fetch(keys_handler, lambda_context, "u_alice", "u_bob")["devices"]
    assert third["oneTimePreKey"] is None and third["signedPreKey"]["keyId"] == 1
    assert call(keys_handler, lambda_context, publish_frame("d_phone", []), "u_bob")["oneTimePreKeys"] == 0


def test_concurrent_claims_hand_out_each_key_exactly_once(aws_env: AwsEnv) -> None:
    keys = KeyStore(aws_env.tables["keys"], ddb=LockedDdb(aws_env.ddb))
    keys.publish(
        "u_bob",
        "d_phone",
        b64("ik"),
        SignedPreKeyRecord(1, b64("spk"), b64("sig")),
        [PreKey(k, b64(f"k{k}")) for k in range(30)],
    )
    with ThreadPoolExecutor(max_workers=8) as pool:
        claimed = list(pool.map(lambda _: keys.claim_one_time("u_bob", "d_phone"), range(40)))
    got = [c.key_id for c in claimed if c is not None]
    assert sorted(got) == list(range(30))  # every key once, none twice
    assert claimed.count(None) == 10
    assert keys.count_one_time("u_bob", "d_phone") == 0


def test_fetching_own_keys_lists_the_other_devices_only(keys_handler: Handler, lambda_context: Any) -> None:
    call(keys_handler, lambda_context, publish_frame("d_phone", [1]), "u_bob", "d_phone")
    call(keys_handler, lambda_context, publish_frame("d_laptop", [1]), "u_bob", "d_laptop")
    keys = fetch(keys_handler, lambda_context, "u_bob", "u_bob", device="d_phone")
    assert [d["deviceId"] for d in keys["devices"]] == ["d_laptop"]
    assert services().keys.count_one_time("u_bob", "d_phone") == 1


def test_a_stranger_gets_keys_for_a_first_message_and_an_unknown_user_has_none(
    keys_handler: Handler, lambda_context: Any, aws_env: AwsEnv
) -> None:
    # Given bob's phone published two one-time prekeys; mallory shares no chat with him
    call(keys_handler, lambda_context, publish_frame("d_phone", [1, 2]), "u_bob")
    # When mallory fetches bob's keys, and a user's who does not exist
    existing = fetch(keys_handler, lambda_context, "u_mallory", "u_bob", rid="r1")
    unknown = fetch(keys_handler, lambda_context, "u_mallory", "u_nobody", rid="r2")
    # Then she gets bob's device with one one-time prekey, and no devices for the unknown user
    [device] = existing["devices"]
    assert device["oneTimePreKey"] is not None
    assert unknown == {"type": "KEYS", "requestId": "r2", "userId": "u_nobody", "devices": []}


def test_a_blocked_user_gets_no_one_time_prekeys_and_cannot_tell(
    keys_handler: Handler, lambda_context: Any, aws_env: AwsEnv
) -> None:
    # Given bob's phone with 5 one-time prekeys, and bob blocking mallory
    call(keys_handler, lambda_context, publish_frame("d_phone", range(5)), "u_bob")
    services().consent.block("u_bob", "u_mallory", 0)
    # When mallory fetches bob's keys
    answer = fetch(keys_handler, lambda_context, "u_mallory", "u_bob")
    # Then she gets his identity and signed prekey, with the null a device out of prekeys has,
    # and none of his prekeys was spent
    [device] = answer["devices"]
    assert device["oneTimePreKey"] is None and device["identityKey"] and device["signedPreKey"]
    assert services().keys.count_one_time("u_bob", "d_phone") == 5


def test_one_user_cannot_drain_anothers_one_time_prekeys(
    keys_handler: Handler, lambda_context: Any, aws_env: AwsEnv
) -> None:
    # Given bob's phone with 100 one-time prekeys
    call(keys_handler, lambda_context, publish_frame("d_phone", range(100)), "u_bob")
    # When mallory fetches his keys 50 times in a row
    answers = [fetch(keys_handler, lambda_context, "u_mallory", "u_bob", rid=f"r{n}") for n in range(50)]
    # Then she got one-time prekeys only within her budget (10 at once), the rest null, and bob's
    # other contacts still find prekeys
    claimed = [a["devices"][0]["oneTimePreKey"] for a in answers if a["devices"][0]["oneTimePreKey"]]
    assert len(claimed) == 10
    assert fetch(keys_handler, lambda_context, "u_carol", "u_bob")["devices"][0]["oneTimePreKey"] is not None
    assert services().keys.count_one_time("u_bob", "d_phone") == 89


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.update(identityKey="not base64!"),
        lambda f: f.update(identityKey=b64("x" * 1025)),
        lambda f: f.update(identityKey=""),
        lambda f: f.pop("identityKey"),
        lambda f: f.pop("signedPreKey"),
        lambda f: f["signedPreKey"].pop("signature"),
        lambda f: f["signedPreKey"].update(keyId="1"),
        lambda f: f["signedPreKey"].update(keyId=-1),
        lambda f: f["signedPreKey"].update(publicKey=123),
        lambda f: f.update(oneTimePreKeys=[{"keyId": k, "publicKey": b64("k")} for k in range(101)]),
        lambda f: f.update(oneTimePreKeys=[{"keyId": 1, "publicKey": b64("a")}] * 2),
        lambda f: f.update(oneTimePreKeys=[{"keyId": 1.5, "publicKey": b64("a")}]),
        lambda f: f.update(oneTimePreKeys=[{"keyId": 1}]),
        lambda f: f.update(oneTimePreKeys={"keyId": 1, "publicKey": b64("a")}),
    ],
    ids=[
        "bad-base64",
        "key-over-1KiB",
        "empty-key",
        "no-identity",
        "no-signed",
        "no-signature",
        "string-keyid",
        "negative-keyid",
        "non-string-key",
        "101-otpks",
        "duplicate-keyid",
        "float-keyid",
        "otpk-without-key",
        "otpks-not-a-list",
    ],
)
def test_bad_publish_frame_is_bad_request_and_writes_nothing(
    keys_handler: Handler, lambda_context: Any, aws_env: AwsEnv, change: Callable[[dict[str, Any]], Any]
) -> None:
    frame = publish_frame("d_phone", [1, 2])
    change(frame)
    answer = call(keys_handler, lambda_context, frame, "u_bob")
    assert answer["type"] == "ERROR" and answer["code"] == "BAD_REQUEST"
    assert aws_env.scan("keys") == []


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "fetchKeys", "requestId": "r1"},
        {"action": "fetchKeys", "requestId": "r1", "userId": "bad id#"},
        {"action": "fetchKeys", "requestId": "r1", "userId": 5},
        {"action": "fetchKeys", "userId": "u_bob"},
    ],
)
def test_bad_fetch_frame_is_bad_request_and_hands_out_nothing(
    keys_handler: Handler,
    lambda_context: Any,
    make_chat: Callable[..., str],
    aws_env: AwsEnv,
    frame: dict[str, Any],
) -> None:
    make_chat("u_alice", "u_bob")
    call(keys_handler, lambda_context, publish_frame("d_phone", [1]), "u_bob")
    before = aws_env.scan("keys")
    answer = call(keys_handler, lambda_context, frame, "u_alice")
    assert answer["type"] == "ERROR" and answer["code"] == "BAD_REQUEST"
    assert aws_env.scan("keys") == before
