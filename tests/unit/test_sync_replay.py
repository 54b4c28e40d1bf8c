"""sync (logic/sync.py): replay of what a device missed, with a fake poster that records frames:
each chat from its cursor in seq order, within the limit, heads for every chat of the user and
none other. Holes (seqs reserved and never written) are in test_sync_holes.py."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest

from chat_backend.errors import ConnectionGone
from chat_backend.logic.send import Ledger
from chat_backend.logic.sync import sync
from tests.unit.helpers import MakeChat, caller
from tests.unit.syncing import GRACE_S, send, sync_frame


@dataclass
class Chats:
    with_bob: str  # alice + bob, 5 messages
    with_carol: str  # alice + carol, 3 messages
    not_alices: str  # bob + carol, 2 messages
    empty: str  # alice + dave, no messages


@pytest.fixture
def chats(ledger: Ledger, make_chat: MakeChat) -> Chats:
    chats = Chats(
        with_bob=make_chat("u_alice", "u_bob", chat_id="c_bob"),
        with_carol=make_chat("u_alice", "u_carol", chat_id="c_carol"),
        not_alices=make_chat("u_bob", "u_carol", chat_id="c_secret"),
        empty=make_chat("u_dave", "u_alice", chat_id="c_dave"),
    )
    alice, bob, carol = caller("u_alice"), caller("u_bob"), caller("u_carol")
    for n in range(1, 6):
        send(ledger, alice if n % 2 else bob, chats.with_bob, f"bob-chat-{n}")
    for n in range(1, 4):
        send(ledger, carol, chats.with_carol, f"carol-chat-{n}")
    for n in range(1, 3):
        send(ledger, bob, chats.not_alices, f"secret-{n}")
    return chats


def replayed(poster: Any) -> list[tuple[str, int]]:
    return [(f["chatId"], f["seq"]) for f in poster.frames()]


def test_sync_replays_only_seq_after_cursor_each_chat_ascending(
    ledger: Ledger, chats: Chats, poster: Any
) -> None:
    # Given alice's laptop has seen the first 3 messages of her chat with bob, and nothing else
    laptop = caller("u_alice", "d_laptop", "conn-laptop")
    # When it syncs
    done = sync(ledger, poster, laptop, sync_frame({chats.with_bob: 3}), GRACE_S)
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


def test_replayed_frames_are_full_message_frames(ledger: Ledger, chats: Chats, poster: Any) -> None:
    # Given alice's phone is up to date with carol's chat except its last message
    phone = caller("u_alice", "d_phone")
    # When it syncs that chat only
    sync(ledger, poster, phone, sync_frame({chats.with_carol: 2, chats.with_bob: 5}), GRACE_S)
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
    ledger: Ledger, chats: Chats, poster: Any
) -> None:
    # Given alice's new tablet, which has seen nothing, syncing 3 at a time
    tablet = caller("u_alice", "d_tablet")
    # When it syncs once
    first = sync(ledger, poster, tablet, sync_frame(limit=3), GRACE_S)
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
        calls.append(sync(ledger, poster, tablet, sync_frame(dict(cursors), limit=3), GRACE_S))
        assert len(calls) < 10
    # Then together the calls deliver every message of her chats exactly once, in order, never over the limit
    everything = [(chats.with_bob, n) for n in range(1, 6)] + [(chats.with_carol, n) for n in range(1, 4)]
    assert replayed(poster) == everything
    assert len(calls) == 3
    assert [c.more for c in calls] == [True, True, False]


@pytest.mark.parametrize(
    ("limit", "more"),
    [
        (8, False),
        (5, True),
        (7, True),
    ],
)
def test_more_is_true_exactly_when_messages_were_left_behind(
    limit: int, more: bool, ledger: Ledger, chats: Chats, poster: Any
) -> None:
    # Given alice has 8 messages to catch up on (5 + 3)
    # When she syncs with a limit of 8, 5 (one chat exactly) or 7
    done = sync(ledger, poster, caller("u_alice"), sync_frame(limit=limit), GRACE_S)
    # Then she gets min(limit, 8) messages, and more says whether some were left
    assert len(poster.posts) == min(limit, 8)
    assert done.more is more


def test_heads_lists_every_chat_of_the_user_even_without_cursors_or_news(
    ledger: Ledger, chats: Chats, poster: Any
) -> None:
    # Given alice is fully caught up on her chat with bob
    # When she syncs naming only that chat
    done = sync(ledger, poster, caller("u_alice"), sync_frame({chats.with_bob: 5}), GRACE_S)
    # Then heads still lists all three of her chats (the empty one with 0), and no chat she is not in
    assert done.heads == {chats.with_bob: 5, chats.with_carol: 3, chats.empty: 0}


def test_cursor_for_a_chat_the_user_is_not_in_yields_nothing_and_no_head(
    ledger: Ledger, chats: Chats, poster: Any
) -> None:
    # Given alice names bob and carol's chat (she is not in it) in her cursors
    # When she syncs
    done = sync(ledger, poster, caller("u_alice"), sync_frame({chats.not_alices: 0}), GRACE_S)
    # Then nothing of that chat is replayed, and its head is not revealed
    assert chats.not_alices not in {chat for chat, _ in replayed(poster)}
    assert chats.not_alices not in done.heads
    # While its members do see it
    bobs = sync(ledger, poster, caller("u_bob"), sync_frame({chats.with_bob: 5}), GRACE_S)
    assert bobs.heads == {chats.with_bob: 5, chats.not_alices: 2}


def test_user_without_chats_gets_empty_sync_done(ledger: Ledger, chats: Chats, poster: Any) -> None:
    # Given a user who is in no chat
    # When she syncs
    done = sync(ledger, poster, caller("u_nobody"), sync_frame(), GRACE_S)
    # Then nothing is pushed and SYNC_DONE is empty
    assert poster.posts == []
    assert (done.heads, done.more) == ({}, False)


def test_a_caller_gone_mid_replay_ends_the_sync_with_no_answer_and_no_error(
    ledger: Ledger, chats: Chats
) -> None:
    # Given alice's connection that goes away after the first replayed frame
    class GoneAfterOne:
        def __init__(self) -> None:
            self.posted = 0

        def post(self, connection_id: str, data: str) -> None:
            if self.posted == 1:
                raise ConnectionGone(connection_id)
            self.posted += 1

    poster = GoneAfterOne()
    # When she syncs from nothing
    done = sync(ledger, poster, caller("u_alice"), sync_frame(), GRACE_S)  # type: ignore[arg-type]
    # Then the replay stops there and there is nobody to answer: no SYNC_DONE, no error
    assert done is None and poster.posted == 1
