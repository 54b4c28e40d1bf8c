"""sync (logic/sync.py): replay of what a device missed, with a fake poster that records frames."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore
from chat_backend.logic.send import send_message
from chat_backend.logic.sync import sync
from chat_backend.models import Caller, SendFrame, SyncFrame


@dataclass
class Chats:
    with_bob: str  # alice + bob, 5 messages
    with_carol: str  # alice + carol, 3 messages
    not_alices: str  # bob + carol, 2 messages
    empty: str  # alice + dave, no messages


def send(store: ChatStore, caller: Caller, chat_id: str, text: str) -> None:
    frame = SendFrame.model_validate(
        {
            "action": "send",
            "clientMsgId": f"{caller.user_id}-{text}",
            "chatId": chat_id,
            "ciphertext": base64.b64encode(text.encode()).decode(),
        }
    )
    send_message(store, caller, frame, 3600)


@pytest.fixture
def chats(store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]) -> Chats:
    chats = Chats(
        with_bob=make_chat("u_alice", "u_bob", chat_id="c_bob"),
        with_carol=make_chat("u_alice", "u_carol", chat_id="c_carol"),
        not_alices=make_chat("u_bob", "u_carol", chat_id="c_secret"),
        empty=make_chat("u_dave", "u_alice", chat_id="c_dave"),
    )
    alice, bob, carol = make_caller("u_alice"), make_caller("u_bob"), make_caller("u_carol")
    for n in range(1, 6):
        send(store, alice if n % 2 else bob, chats.with_bob, f"bob-chat-{n}")
    for n in range(1, 4):
        send(store, carol, chats.with_carol, f"carol-chat-{n}")
    for n in range(1, 3):
        send(store, bob, chats.not_alices, f"secret-{n}")
    return chats


def sync_frame(cursors: dict[str, int] | None = None, limit: int | None = None) -> SyncFrame:
    data: dict[str, Any] = {"action": "sync", "requestId": "r1", "cursors": cursors or {}}
    if limit is not None:
        data["limit"] = limit
    return SyncFrame.model_validate(data)


def replayed(poster: Any) -> list[tuple[str, int]]:
    return [(f["chatId"], f["seq"]) for f in poster.frames()]


def test_sync_replays_only_seq_after_cursor_each_chat_ascending(
    store: ChatStore, chats: Chats, poster: Any, make_caller: Callable[..., Caller]
) -> None:
    # Given alice's laptop has seen the first 3 messages of her chat with bob, and nothing else
    laptop = make_caller("u_alice", "d_laptop", "conn-laptop")
    # When it syncs
    done = sync(store, poster, laptop, sync_frame({chats.with_bob: 3}))
    # Then it gets bob-chat 4, 5 and all of the carol chat (no cursor = 0), each chat in seq order,
    # every frame on its own connection
    assert replayed(poster) == [
        (chats.with_bob, 4),
        (chats.with_bob, 5),
        (chats.with_carol, 1),
        (chats.with_carol, 2),
        (chats.with_carol, 3),
    ]
    assert {conn for conn, _ in poster.posts} == {"conn-laptop"}
    # And SYNC_DONE has the heads and nothing more to fetch
    assert done.request_id == "r1"
    assert done.more is False
    assert done.heads == {chats.with_bob: 5, chats.with_carol: 3, chats.empty: 0}


def test_replayed_frames_are_full_message_frames(
    store: ChatStore, chats: Chats, poster: Any, make_caller: Callable[..., Caller]
) -> None:
    # Given alice's phone is up to date with carol's chat except its last message
    phone = make_caller("u_alice", "d_phone")
    # When it syncs that chat only
    sync(store, poster, phone, sync_frame({chats.with_carol: 2, chats.with_bob: 5}))
    # Then the one MESSAGE frame carries sender, device, ciphertext and times as stored
    [message] = poster.frames()
    assert message["type"] == "MESSAGE"
    assert (message["chatId"], message["seq"], message["from"]) == (chats.with_carol, 3, "u_carol")
    assert message["fromDevice"] == "d_phone"  # carol's default test device
    assert base64.b64decode(message["ciphertext"]) == b"carol-chat-3"
    assert message["serverMsgId"].startswith("m_")
    assert message["createdAt"].endswith("Z")
    assert message["mediaIds"] == []


def test_sync_respects_limit_and_the_next_call_returns_the_rest(
    store: ChatStore, chats: Chats, poster: Any, make_caller: Callable[..., Caller]
) -> None:
    # Given alice's new tablet, which has seen nothing, syncing 3 at a time
    tablet = make_caller("u_alice", "d_tablet")
    # When it syncs once
    first = sync(store, poster, tablet, sync_frame(limit=3))
    # Then it gets at most 3 messages and is told there is more
    first_batch = replayed(poster)
    assert len(first_batch) == 3
    assert first.more is True
    # And when it keeps syncing with the cursors advanced by what it got
    cursors: dict[str, int] = {}
    calls = [first]
    while calls[-1].more:
        for chat_id, seq in replayed(poster):
            cursors[chat_id] = max(cursors.get(chat_id, 0), seq)
        calls.append(sync(store, poster, tablet, sync_frame(dict(cursors), limit=3)))
        assert len(calls) < 10
    # Then together the calls deliver every message of her chats exactly once, in order, never over the limit
    everything = [(chats.with_bob, n) for n in range(1, 6)] + [(chats.with_carol, n) for n in range(1, 4)]
    assert replayed(poster) == everything
    assert len(calls) == 3
    assert [c.more for c in calls] == [True, True, False]


@pytest.mark.parametrize(("limit", "more"), [(8, False), (5, True), (7, True)])
def test_more_is_true_exactly_when_messages_were_left_behind(
    limit: int, more: bool, store: ChatStore, chats: Chats, poster: Any, make_caller: Callable[..., Caller]
) -> None:
    # Given alice has 8 messages to catch up on (5 + 3)
    # When she syncs with a limit of 8, 5 (one chat exactly) or 7
    done = sync(store, poster, make_caller("u_alice"), sync_frame(limit=limit))
    # Then she gets min(limit, 8) messages, and more says whether some were left
    assert len(poster.posts) == min(limit, 8)
    assert done.more is more


def test_heads_lists_every_chat_of_the_user_even_without_cursors_or_news(
    store: ChatStore, chats: Chats, poster: Any, make_caller: Callable[..., Caller]
) -> None:
    # Given alice is fully caught up on her chat with bob
    # When she syncs naming only that chat
    done = sync(store, poster, make_caller("u_alice"), sync_frame({chats.with_bob: 5}))
    # Then heads still lists all three of her chats (the empty one with 0), and no chat she is not in
    assert done.heads == {chats.with_bob: 5, chats.with_carol: 3, chats.empty: 0}


def test_cursor_for_a_chat_the_user_is_not_in_yields_nothing_and_no_head(
    store: ChatStore, chats: Chats, poster: Any, make_caller: Callable[..., Caller]
) -> None:
    # Given alice names bob and carol's chat (she is not in it) in her cursors
    # When she syncs
    done = sync(store, poster, make_caller("u_alice"), sync_frame({chats.not_alices: 0}))
    # Then nothing of that chat is replayed, and its head is not revealed
    assert chats.not_alices not in {chat for chat, _ in replayed(poster)}
    assert chats.not_alices not in done.heads
    # While its members do see it
    bobs = sync(store, poster, make_caller("u_bob"), sync_frame({chats.with_bob: 5}))
    assert bobs.heads == {chats.with_bob: 5, chats.not_alices: 2}


def test_user_without_chats_gets_empty_sync_done(
    store: ChatStore, chats: Chats, poster: Any, make_caller: Callable[..., Caller]
) -> None:
    # Given a user who is in no chat
    # When she syncs
    done = sync(store, poster, make_caller("u_nobody"), sync_frame())
    # Then nothing is pushed and SYNC_DONE is empty
    assert poster.posts == []
    assert (done.heads, done.more) == ({}, False)
