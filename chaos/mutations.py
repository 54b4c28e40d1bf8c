"""The frame fuzzer's frames (chaos/fuzzer.py sends them): one valid frame of every route, and the
mutations that make it invalid: a field set to a value no frame accepts there, a required field
left out, a receipt with both forms or neither, or a broken shape.

A mutation that leaves a frame valid would be this table's mistake: the fuzzer counts such a frame
as `accepted` (it reached the use case) and fails the run, so the table stays honest.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from typing import Any

LONE = "\ud800"
BAD_IDS: list[Any] = ["", LONE, "a" * 65, "sp ace", "c/9", 7, 1.5, True, [], {}, ["c_1"]]
BAD_REQUEST_IDS: list[Any] = ["", LONE, "r" * 129, 7, True, [], {"a": 1}]
BAD_USER_IDS: list[Any] = [*BAD_IDS, "system"]
BAD_SEQS: list[Any] = [-1, 2**53, 10**60, "5", 1.5, True, [], {}, None]
BAD_BYTES: list[Any] = ["", "@@@@", "YQ", 5, True, [], {}, LONE, None]


def bad_values(field_name: str) -> list[Any]:
    """Values that no frame accepts in this field."""
    table: dict[str, list[Any]] = {
        "requestId": BAD_REQUEST_IDS,
        "clientMsgId": ["", LONE, "m" * 129, 7, [], None],
        "chatId": [*BAD_IDS, None],
        "mediaId": [*BAD_IDS, None],
        "serverMsgId": BAD_IDS,
        "userId": [*BAD_USER_IDS, None],
        # Every route's cursor is an id, or (getChatDevices) two joined by a dot.
        "cursor": [*BAD_IDS, "u_a.", ".d", "u_a.d.x", "u_a..d", "u_a." + "d" * 65],
        "ciphertext": BAD_BYTES,
        "cursors": [[], "c_1", 5, {"c_1": -1}, {"c_1": "1"}, {"c 1": 1}, {LONE: 1}, {"c_1": 2**53}],
        "limit": [0, -5, 10**6, "10", 1.5, None, []],
        "only": ["yes", 2, [], {}, None],
        "members": [[], "u_a", [5], ["u_a", "u_a"], ["system"], [LONE], None, {}],
        "kind": ["channel", "", 5, None, []],
        "name": ["", "n" * 129, 5, [], {}, LONE],
        "type": ["SEEN", "read", 1, None, []],
        "upToSeq": [0, *BAD_SEQS[:-1]],
        "subscribe": ["u_a", [5], [LONE], ["system"], [f"u_{i}" for i in range(1001)], {}, None],
        "unsubscribe": ["u_a", [5], [LONE], {}, None],
        "groupAdd": ["friends", "", 1, None, []],
        "size": [0, -1, 2**63, "5", 1.5, None, []],
        "platform": ["sms", "", "APNS", 5, None, [], LONE],
        "token": ["", "has space", "tab\t", "t" * 4097, 5, None, [], LONE],
        "contentType": ["", "image", "image/jpeg; charset=x", 5, None, "a" * 300 + "/b", LONE],
        "mediaIds": ["md_1", [5], [LONE], [""], {}],
        # Keys may come unpadded (Olm's convention): "YQ" is a key; a lone base64 character is not.
        "identityKey": [v for v in BAD_BYTES if v != "YQ"] + ["Y"],
        "signingKey": [v for v in BAD_BYTES if v != "YQ"] + ["Y"],
        "signedPreKey": [
            None,
            5,
            "k",
            [],
            {"keyId": -1, "publicKey": "AAAA", "signature": "AAAA"},
            {"keyId": 1, "publicKey": "@@", "signature": "AAAA"},
            {"keyId": 1},
        ],
        "txnId": ["", "t" * 65, 5, None, [], LONE],
        "messages": [
            [],
            "m",
            [{"userId": "u_a", "deviceId": "d"}],
            [{"userId": "u_a", "deviceId": "d", "ciphertext": "@@@@"}],
            [{"userId": LONE, "deviceId": "d", "ciphertext": "eA=="}],
            [{"userId": "u_a", "deviceId": "d", "ciphertext": "eA=="}] * 101,
            None,
        ],
        "userIds": [[], "u_a", [5], [LONE], ["system"], [f"u_{i}" for i in range(101)], None, {}],
        "devices": [[], "d", [{"userId": "u_a"}], [{"userId": "u_a", "deviceId": LONE}], [5], None, {}],
        "ids": [[], "td_1", ["td_x"], [5], [LONE], None, ["td_0000000000001_0a0b0c0d"] * 101],
        "oneTimePreKeys": [
            "k",
            5,
            [{"keyId": "x", "publicKey": "AAAA"}],
            [{"keyId": 1}],
            {},
            [{"keyId": 1, "publicKey": "AAAA"}, {"keyId": 1, "publicKey": "AAAA"}],
        ],
    }
    return table[field_name]


def valid_frames(chat_id: str, other_user: str) -> list[dict[str, Any]]:
    """One valid frame of each route (a member of `chat_id`, `other_user` its other member)."""
    key = base64.b64encode(b"k" * 32).decode()
    return [
        {"action": "send", "clientMsgId": "cm-1", "chatId": chat_id, "ciphertext": "aGk=", "mediaIds": []},
        {"action": "sync", "requestId": "r", "cursors": {chat_id: 0}, "limit": 10, "only": True},
        {"action": "createChat", "requestId": "r", "kind": "group", "name": "n", "members": [other_user]},
        {"action": "addMembers", "requestId": "r", "chatId": chat_id, "members": ["u_fuzz_new"]},
        {"action": "removeMembers", "requestId": "r", "chatId": chat_id, "members": [other_user]},
        {"action": "getMembers", "requestId": "r", "chatId": chat_id, "cursor": None},
        {"action": "receipt", "chatId": chat_id, "type": "READ", "upToSeq": 1},
        {"action": "receipts", "requestId": "r", "chatId": chat_id, "serverMsgId": "m_1_x"},
        {"action": "presence", "requestId": "r", "subscribe": [other_user], "unsubscribe": []},
        {"action": "typing", "chatId": chat_id},
        {
            "action": "publishKeys",
            "identityKey": key,
            "signingKey": key,
            "signedPreKey": {"keyId": 1, "publicKey": key, "signature": key},
            "oneTimePreKeys": [{"keyId": 1, "publicKey": key}],
        },
        {"action": "fetchKeys", "requestId": "r", "userId": other_user},
        {
            "action": "mediaUpload",
            "requestId": "r",
            "chatId": chat_id,
            "contentType": "image/png",
            "size": 10,
        },
        {"action": "mediaDownload", "requestId": "r", "chatId": chat_id, "mediaId": "md_1"},
        {"action": "block", "requestId": "r", "userId": other_user},
        {"action": "unblock", "requestId": "r", "userId": other_user},
        {"action": "setPrivacy", "requestId": "r", "groupAdd": "nobody"},
        {"action": "listChats", "requestId": "r", "cursor": None},
        {
            "action": "sendToDevice",
            "requestId": "r",
            "txnId": "t-1",
            "chatId": chat_id,
            "messages": [{"userId": other_user, "deviceId": "d_fuzz", "ciphertext": "aGk="}],
        },
        {"action": "ackToDevice", "requestId": "r", "ids": ["td_0000000000001_0a0b0c0d"]},
        {"action": "queryDevices", "requestId": "r", "userIds": [other_user]},
        {"action": "claimKeys", "requestId": "r", "devices": [{"userId": other_user, "deviceId": "d_fuzz"}]},
        {"action": "getChatDevices", "requestId": "r", "chatId": chat_id, "cursor": f"{other_user}.d_fuzz"},
        {"action": "registerPush", "requestId": "r", "platform": "fcm", "token": "fcm-token-fuzz"},
        {"action": "unregisterPush", "requestId": "r"},
    ]


Mutation = Callable[[dict[str, Any], random.Random], str]


def _fields(frame: dict[str, Any]) -> list[str]:
    return [k for k in frame if k != "action"]


def bad_field(frame: dict[str, Any], rng: random.Random) -> str:
    """One field set to a value no frame accepts there (and maybe a second one too)."""
    mutated = dict(frame)
    for name in rng.sample(_fields(frame), k=min(len(_fields(frame)), rng.choice((1, 1, 2)))):
        allowed_none = (frame["action"], name) in NONE_ALLOWED
        mutated[name] = rng.choice([v for v in bad_values(name) if not (v is None and allowed_none)])
    return json.dumps(mutated)


def missing_field(frame: dict[str, Any], rng: random.Random) -> str:
    """A required field left out (those a valid frame may omit are not chosen)."""
    dropped = rng.choice([k for k in _fields(frame) if k in REQUIRED.get(frame["action"], ())])
    mutated = {k: v for k, v in frame.items() if k != dropped}
    return json.dumps(mutated)


def receipt_forms(frame: dict[str, Any], rng: random.Random) -> str:
    """A receipt with both forms, or neither."""
    mutated = dict(frame)
    if rng.random() < 0.5:
        mutated["serverMsgId"] = "m_1_x"
    else:
        mutated.pop("upToSeq", None)
    return json.dumps(mutated)


def structural(frame: dict[str, Any], rng: random.Random) -> str:
    """Not a JSON object with a known action: cut short, another JSON type, no or an unknown action,
    NaN, deep nesting, or bytes that are not text at all."""
    text = json.dumps(frame)
    choice = rng.randrange(9)
    if choice == 0:
        return text[: rng.randrange(1, len(text) - 1)]
    if choice == 1:
        return json.dumps([frame])
    if choice == 2:
        return json.dumps(rng.choice(["send", 5, None, True]))
    if choice == 3:
        return json.dumps({k: v for k, v in frame.items() if k != "action"})
    if choice == 4:
        return json.dumps({**frame, "action": rng.choice(["Send", "sendX", "", LONE, "$default"])})
    if choice == 5:
        return json.dumps({**frame, "action": rng.choice([5, None, ["send"], {"a": 1}])})
    if choice == 6:
        return text.replace("{", '{"n": NaN, ', 1)
    if choice == 7:
        depth = rng.choice((100, 1000, 5000))
        return '{"action": "x", "d": ' + "[" * depth + "]" * depth + "}"
    return "\x00\x01" + text[1:] + "\udcff".encode("utf-8", "surrogatepass").decode("latin-1")


# Fields some routes take as null where others refuse it.
NONE_ALLOWED = {("sendToDevice", "chatId"), ("publishKeys", "signingKey")}

REQUIRED: dict[str, tuple[str, ...]] = {
    "send": ("clientMsgId", "chatId", "ciphertext"),
    "sync": ("requestId",),
    "createChat": ("requestId", "kind", "members"),
    "addMembers": ("requestId", "chatId", "members"),
    "removeMembers": ("requestId", "chatId", "members"),
    "getMembers": ("requestId", "chatId"),
    "receipt": ("chatId", "type"),
    "receipts": ("requestId", "chatId", "serverMsgId"),
    "typing": ("chatId",),
    "publishKeys": ("identityKey", "signedPreKey"),
    "fetchKeys": ("requestId", "userId"),
    "mediaUpload": ("requestId", "chatId", "contentType", "size"),
    "mediaDownload": ("requestId", "chatId", "mediaId"),
    "block": ("requestId", "userId"),
    "unblock": ("requestId", "userId"),
    "setPrivacy": ("requestId", "groupAdd"),
    "listChats": ("requestId",),
    "sendToDevice": ("requestId", "txnId", "messages"),
    "ackToDevice": ("requestId", "ids"),
    "queryDevices": ("requestId", "userIds"),
    "claimKeys": ("requestId", "devices"),
    "getChatDevices": ("requestId", "chatId"),
    "registerPush": ("requestId", "platform", "token"),
    "unregisterPush": ("requestId",),
}


def mutate(frame: dict[str, Any], rng: random.Random, structural_one: bool) -> tuple[str, str]:
    """(kind of mutation, the frame's text); `structural_one`: break the frame's very shape."""
    if structural_one:
        return "structural", structural(frame, rng)
    kinds: list[tuple[str, Mutation]] = [("bad_field", bad_field), ("bad_field", bad_field)]
    if REQUIRED.get(frame["action"]):
        kinds.append(("missing_field", missing_field))
    if frame["action"] == "receipt":
        kinds.append(("receipt_forms", receipt_forms))
    kind, fn = rng.choice(kinds)
    return kind, fn(frame, rng)
