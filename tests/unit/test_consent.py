"""Consent (logic/consent.py, dal/consent_store.py, the consent function): blocks and groupAdd.
A blocked user reaches the blocker with nothing, and no answer tells it so."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore
from chat_backend.logic.audience import MemberListCache
from chat_backend.logic.direct import push_sent
from chat_backend.logic.receipts import record_receipt
from chat_backend.logic.send import Ledger, send_message
from chat_backend.logic.sync import sync
from chat_backend.logic.typing import relay_typing
from chat_backend.models.client_frames import ReceiptFrame, SyncFrame, TypingFrame
from chat_backend.services import services
from tests.unit.conftest import AwsEnv, RecordingPoster
from tests.unit.helpers import GRACE_S, POLICY, Route, caller, online_all, send_frame

Answer = Callable[..., dict[str, Any]]


@pytest.fixture
def answer(route: Route) -> Answer:
    """The frame a two-way route answers `user` with."""

    def call(function: str, body: dict[str, Any], user: str) -> dict[str, Any]:
        return dict(json.loads(route(function, body, user_id=user)["body"]))

    return call


def block(answer: Answer, blocker: str, target: str, action: str = "block") -> dict[str, Any]:
    return answer("consent", {"action": action, "requestId": "rb", "userId": target}, blocker)


def create(answer: Answer, user: str, kind: str, members: list[str]) -> dict[str, Any]:
    return answer(
        "chats", {"action": "createChat", "requestId": "rc", "kind": kind, "members": members}, user
    )


def test_block_unblock_and_set_privacy_answer_ok_whoever_the_other_user_is(answer: Answer) -> None:
    # When alice blocks bob and a user who does not exist, unblocks bob, and sets her privacy
    answers = [
        block(answer, "u_alice", "u_bob"),
        block(answer, "u_alice", "u_nobody"),
        block(answer, "u_alice", "u_bob", "unblock"),
        answer("consent", {"action": "setPrivacy", "requestId": "rb", "groupAdd": "nobody"}, "u_alice"),
    ]
    # Then each is the same OK
    assert answers == [{"type": "OK", "requestId": "rb"}] * 4
    # And blocking oneself is a BAD_REQUEST
    assert block(answer, "u_alice", "u_alice")["code"] == "BAD_REQUEST"


def test_a_blocked_users_direct_messages_are_acked_but_a_void_to_the_blocker(
    answer: Answer, ledger: Ledger, store: ChatStore
) -> None:
    # Given alice and bob's direct chat, both online on their phones, and alice blocking bob
    chat_id = create(answer, "u_bob", "direct", ["u_alice"])["chatId"]
    block(answer, "u_alice", "u_bob")
    pusher, pusher_poster = recording_pusher()
    online_all(pusher.registry, "u_alice", "u_bob")
    # When bob sends a message
    sent = send_message(ledger, caller("u_bob"), send_frame(chat_id, data=b"hello?"), POLICY)
    push_sent(ledger, pusher, sent)
    # Then bob has his ACK, and alice's phone got a VOID at that seq, never the message
    assert sent.ack.seq == 1
    assert pusher_poster.frames() == [{"type": "VOID", "chatId": chat_id, "seq": 1}]
    # And her sync replays the VOID too, while bob's laptop syncs the message itself
    assert replay(ledger, "u_alice", chat_id) == [{"type": "VOID", "chatId": chat_id, "seq": 1}]
    assert replay(ledger, "u_bob", chat_id, device="d_laptop")[0]["type"] == "MESSAGE"
    # And once alice unblocks him, his next message reaches her, the blocked one stays a VOID
    block(answer, "u_alice", "u_bob", "unblock")
    send_message(ledger, caller("u_bob"), send_frame(chat_id, data=b"hi"), POLICY)
    assert [f["type"] for f in replay(ledger, "u_alice", chat_id)] == ["VOID", "MESSAGE"]


def test_a_direct_chat_created_after_the_block_carries_it(answer: Answer, ledger: Ledger) -> None:
    # Given alice blocking bob before they have any chat
    block(answer, "u_alice", "u_bob")
    # When bob creates their direct chat and sends in it
    chat_id = create(answer, "u_bob", "direct", ["u_alice"])["chatId"]
    send_message(ledger, caller("u_bob"), send_frame(chat_id), POLICY)
    # Then it is a VOID to alice
    assert replay(ledger, "u_alice", chat_id) == [{"type": "VOID", "chatId": chat_id, "seq": 1}]


def replay(ledger: Ledger, user: str, chat_id: str, device: str = "d_phone") -> list[dict[str, Any]]:
    poster = RecordingPoster()
    frame = SyncFrame.model_validate({"action": "sync", "requestId": "s", "cursors": {chat_id: 0}})
    sync(ledger, poster, caller(user, device), frame, GRACE_S)
    return [f for f in poster.frames() if f.get("chatId") == chat_id]


@pytest.mark.parametrize(
    ("setting", "direct_chat", "added"),
    [
        ("everyone", False, True),
        ("chatted", True, True),
        ("chatted", False, False),
        ("nobody", True, False),
    ],
)
def test_group_add_follows_the_users_privacy_setting(
    answer: Answer, aws_env: AwsEnv, setting: str, direct_chat: bool, added: bool
) -> None:
    # Given bob's groupAdd setting, and maybe a direct chat between him and alice
    answer("consent", {"action": "setPrivacy", "requestId": "p", "groupAdd": setting}, "u_bob")
    if direct_chat:
        create(answer, "u_bob", "direct", ["u_alice"])
    # When alice creates a group with bob and carol
    chat = create(answer, "u_alice", "group", ["u_bob", "u_carol"])
    # Then bob is in it, or left out and named in notAdded (carol, who set nothing, is in)
    assert chat["memberCount"] == (3 if added else 2)
    assert chat.get("notAdded") == (None if added else ["u_bob"])


def test_a_blocker_cannot_be_added_to_groups_by_the_blocked_user(answer: Answer) -> None:
    # Given bob blocking mallory, and a group of mallory's with carol
    block(answer, "u_bob", "u_mallory")
    group = create(answer, "u_mallory", "group", ["u_carol"])
    # When mallory adds bob and dave to it
    add = {
        "action": "addMembers",
        "requestId": "ra",
        "chatId": group["chatId"],
        "members": ["u_bob", "u_dave"],
    }
    added = answer("chats", add, "u_mallory")
    # Then dave is in, bob is left out, named in notAdded as anyone left out for privacy would be
    assert (added["memberCount"], added["notAdded"]) == (3, ["u_bob"])
    # And alice, whom bob does not block, may still add him
    other = create(answer, "u_alice", "group", ["u_bob"])
    assert other["memberCount"] == 2 and "notAdded" not in other


def recording_pusher() -> tuple[Any, RecordingPoster]:
    poster = RecordingPoster()
    return dataclasses.replace(services().pusher, poster=poster), poster


def test_typing_and_receipts_of_a_blocked_user_reach_everyone_but_the_blocker(
    answer: Answer, ledger: Ledger, store: ChatStore, make_chat: Callable[..., str]
) -> None:
    # Given a group of alice, bob and carol, all online, with a message from alice and one from
    # carol, and alice blocking bob
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    send_message(ledger, caller("u_alice"), send_frame(chat_id), POLICY)
    send_message(ledger, caller("u_carol"), send_frame(chat_id), POLICY)
    block(answer, "u_alice", "u_bob")
    pusher, poster = recording_pusher()
    connections = online_all(pusher.registry, "u_alice", "u_bob", "u_carol")
    # When bob types, then reads both messages
    typing = TypingFrame.model_validate({"action": "typing", "chatId": chat_id})
    s = services()
    relay_typing(store, s.consent, MemberListCache(), s.limiter, pusher, caller("u_bob"), typing, 256)
    read = ReceiptFrame.model_validate({"action": "receipt", "chatId": chat_id, "type": "READ", "upToSeq": 2})
    record_receipt(s.receipts, s.consent, pusher, s.summaries_queue, caller("u_bob"), read)
    # Then carol got his TYPING and his RECEIPT; alice got neither
    told = {(conn, frame["type"]) for conn, frame in poster.posts}
    assert told == {("conn-u_carol-d_phone", "TYPING"), ("conn-u_carol-d_phone", "RECEIPT")}
    assert "conn-u_alice-d_phone" in connections


def test_a_block_ends_the_blocked_users_presence_subscriptions(answer: Answer, aws_env: AwsEnv) -> None:
    # Given bob's two devices watching alice
    presence = services().presence
    for device in ("d_phone", "d_laptop"):
        presence.watch("u_bob", device, ["u_alice"], 2_000_000_000)
    presence.watch("u_carol", "d_phone", ["u_alice"], 2_000_000_000)
    # When alice blocks bob
    block(answer, "u_alice", "u_bob")
    # Then only carol still watches her
    assert [s.subscriber for s in presence.subscribers("u_alice", 0)] == ["u_carol"]
