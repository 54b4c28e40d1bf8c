"""The authorization matrix's rows (test_authorization_matrix.py): for every route a client may
send, the frame each actor of the scene (authorization_scene.py) tries, and the outcome its
standing allows."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from tests.integration.authorization_scene import Scene, publish_keys

ACTORS = ("stranger", "blocked", "removed", "member", "admin", "other_device")


def outcome(answer: dict[str, Any]) -> str:
    """An answer as the rows name it: its type, or ERROR:<code>."""
    return f"ERROR:{answer['code']}" if answer["type"] == "ERROR" else str(answer["type"])


# route -> (frame for the scene and actor, expected outcome per actor). SILENT: a fire-and-forget
# frame that was accepted. The other devices' pushes of accepted frames are checked for leaks by
# test_authorization_matrix.py.
Row = tuple[str, Callable[[Scene, str], dict[str, Any]], dict[str, str]]
MEMBERS_OK = {"stranger": "ERROR:FORBIDDEN", "removed": "ERROR:FORBIDDEN"}


def _expect(default: str, **special: str) -> dict[str, str]:
    return {a: special.get(a, default) for a in ACTORS}


MATRIX: list[Row] = [
    (
        "send",
        lambda s, a: {"action": "send", "clientMsgId": f"x-{a}", "chatId": s.group, "ciphertext": "aGk="},
        _expect("ACK", **MEMBERS_OK),
    ),
    (
        "send (direct, blocked)",
        lambda s, a: {
            "action": "send",
            "clientMsgId": f"y-{a}",
            "chatId": s.direct_blocked,
            "ciphertext": "aGk=",
        },
        _expect("ERROR:FORBIDDEN", blocked="ACK", admin="ACK", other_device="ACK"),
    ),
    (
        "sync",
        lambda s, a: {"action": "sync", "requestId": f"s-{a}", "cursors": {s.group: 0}},
        _expect("SYNC_DONE"),
    ),
    (
        "getMembers",
        lambda s, a: {"action": "getMembers", "requestId": f"gm-{a}", "chatId": s.group},
        _expect("MEMBERS", **MEMBERS_OK),
    ),
    (
        "addMembers",
        lambda s, a: {
            "action": "addMembers",
            "requestId": f"am-{a}",
            "chatId": s.group,
            "members": [f"u_new_{a}"],
        },
        _expect("ERROR:FORBIDDEN", admin="CHAT", other_device="CHAT"),
    ),
    (
        "removeMembers",
        lambda s, a: {
            "action": "removeMembers",
            "requestId": f"rm-{a}",
            "chatId": s.group,
            "members": ["u_extra1" if a == "admin" else "u_extra2"],
        },
        _expect("ERROR:FORBIDDEN", admin="CHAT", other_device="CHAT"),
    ),
    (
        "receipt",
        lambda s, a: {"action": "receipt", "chatId": s.group, "type": "READ", "upToSeq": 1},
        _expect("SILENT", **MEMBERS_OK),
    ),
    (
        "receipts",
        lambda s, a: {
            "action": "receipts",
            "requestId": f"rq-{a}",
            "chatId": s.group,
            "serverMsgId": s.first_message_id,
        },
        _expect("ERROR:FORBIDDEN", admin="RECEIPTS", other_device="RECEIPTS"),
    ),
    ("typing", lambda s, a: {"action": "typing", "chatId": s.group}, _expect("SILENT", **MEMBERS_OK)),
    (
        "presence",
        lambda s, a: {
            "action": "presence",
            "requestId": f"p-{a}",
            "subscribe": [s.users["bob" if a in ("admin", "other_device") else "alice"]],
        },
        _expect("ERROR:FORBIDDEN", member="PRESENCE", admin="PRESENCE", other_device="PRESENCE"),
    ),
    (
        "typing (direct, blocked)",
        lambda s, a: {"action": "typing", "chatId": s.direct_blocked},
        _expect("ERROR:FORBIDDEN", blocked="SILENT", admin="SILENT", other_device="SILENT"),
    ),
    (
        "receipt (direct, blocked)",
        lambda s, a: {"action": "receipt", "chatId": s.direct_blocked, "type": "READ", "upToSeq": 1},
        _expect("ERROR:FORBIDDEN", blocked="SILENT", admin="SILENT", other_device="SILENT"),
    ),
    ("heartbeat", lambda s, a: {"action": "heartbeat"}, _expect("PONG")),
    ("publishKeys", lambda s, a: publish_keys(), _expect("KEYS_PUBLISHED")),
    (
        "fetchKeys",
        lambda s, a: {"action": "fetchKeys", "requestId": f"fk-{a}", "userId": s.users["alice"]},
        _expect("KEYS"),
    ),
    (
        "mediaUpload",
        lambda s, a: {
            "action": "mediaUpload",
            "requestId": f"mu-{a}",
            "chatId": s.group,
            "contentType": "image/png",
            "size": 5,
        },
        _expect("MEDIA_UPLOAD", **MEMBERS_OK),
    ),
    (
        "mediaDownload (in carol's window)",
        lambda s, a: {
            "action": "mediaDownload",
            "requestId": f"md-{a}",
            "chatId": s.group,
            "mediaId": s.media_in_window,
        },
        _expect("MEDIA_URL", stranger="ERROR:FORBIDDEN"),
    ),
    (
        "mediaDownload (after carol)",
        lambda s, a: {
            "action": "mediaDownload",
            "requestId": f"mx-{a}",
            "chatId": s.group,
            "mediaId": s.media_after,
        },
        _expect("MEDIA_URL", stranger="ERROR:FORBIDDEN", removed="ERROR:NOT_FOUND"),
    ),
    ("listChats", lambda s, a: {"action": "listChats", "requestId": f"lc-{a}"}, _expect("CHATS")),
    (
        "createChat (group with alice)",
        lambda s, a: {
            "action": "createChat",
            "requestId": f"cc-{a}",
            "kind": "group",
            "members": [s.users["alice"] if a not in ("admin", "other_device") else s.users["bob"]],
        },
        _expect("CHAT"),
    ),
    (
        "sendToDevice (to a member of G)",
        lambda s, a: {
            "action": "sendToDevice",
            "requestId": f"td-{a}",
            "txnId": f"txn-{a}",
            "chatId": s.group,
            "messages": [
                {
                    "userId": s.users["bob" if a in ("admin", "other_device") else "alice"],
                    "deviceId": "d1",
                    "ciphertext": "aGk=",
                }
            ],
        },
        _expect("TO_DEVICE_ACK", **MEMBERS_OK),
    ),
    (
        "queryDevices",
        lambda s, a: {"action": "queryDevices", "requestId": f"qd-{a}", "userIds": [s.users["alice"]]},
        _expect("DEVICES"),
    ),
    (
        "claimKeys",
        lambda s, a: {
            "action": "claimKeys",
            "requestId": f"ck-{a}",
            "devices": [{"userId": s.users["alice"], "deviceId": "d1"}],
        },
        _expect("CLAIMED"),
    ),
    (
        "getChatDevices",
        lambda s, a: {"action": "getChatDevices", "requestId": f"gd-{a}", "chatId": s.group},
        _expect("CHAT_DEVICES", **MEMBERS_OK),
    ),
    (
        "getChatDevices (direct, blocked)",
        lambda s, a: {"action": "getChatDevices", "requestId": f"gb-{a}", "chatId": s.direct_blocked},
        _expect("ERROR:FORBIDDEN", blocked="CHAT_DEVICES", admin="CHAT_DEVICES", other_device="CHAT_DEVICES"),
    ),
    (
        "ackToDevice",
        lambda s, a: {"action": "ackToDevice", "requestId": f"ak-{a}", "ids": ["td_0000000000001_0a0b0c0d"]},
        _expect("OK"),
    ),
    (
        "setPrivacy",
        lambda s, a: {"action": "setPrivacy", "requestId": f"sp-{a}", "groupAdd": "everyone"},
        _expect("OK"),
    ),
    ("block", lambda s, a: {"action": "block", "requestId": f"bl-{a}", "userId": "u_nobody"}, _expect("OK")),
    (
        "unblock",
        lambda s, a: {"action": "unblock", "requestId": f"ub-{a}", "userId": "u_nobody"},
        _expect("OK"),
    ),
    # A device's own push token: anyone's to set or clear, and it tells nobody anything.
    (
        "registerPush",
        lambda s, a: {"action": "registerPush", "requestId": f"rp-{a}", "platform": "fcm", "token": f"t-{a}"},
        _expect("OK"),
    ),
    ("unregisterPush", lambda s, a: {"action": "unregisterPush", "requestId": f"up-{a}"}, _expect("OK")),
    # Last: a new identity key on every device (DEVICES_CHANGED goes to those who share a chat).
    (
        "publishKeys (a new identity key)",
        lambda s, a: publish_keys() | {"identityKey": base64.b64encode(f"new-{a}".encode()).decode()},
        _expect("KEYS_PUBLISHED"),
    ),
]
