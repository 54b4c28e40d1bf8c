"""sync (logic/sync.py): replay of what a device missed, with a fake poster that records frames,
including holes (seqs reserved and never written): VOIDed once past the grace, else the end of the
chat's run for now."""

from __future__ import annotations

import base64
import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from chat_backend.errors import ChangeLost, ConnectionGone
from chat_backend.logic.membership_changes import announcement
from chat_backend.logic.send import Ledger, SendPolicy, send_message
from chat_backend.logic.sync import sync
from chat_backend.models.client_frames import SendFrame, SyncFrame
from chat_backend.models.events import Caller
from chat_backend.models.records import StoredMessage, StoredVoid
from tests.unit import helpers
from tests.unit.helpers import T0, MakeChat, Proxy, caller

GRACE_S = 5.0
POLICY = SendPolicy(dedup_ttl_s=3600, hole_grace_s=GRACE_S)


@dataclass
class Chats:
    with_bob: str  # alice + bob, 5 messages
    with_carol: str  # alice + carol, 3 messages
    not_alices: str  # bob + carol, 2 messages
    empty: str  # alice + dave, no messages


def send_frame(who: Caller, chat_id: str, text: str) -> SendFrame:
    """`text` sent by `who` under the clientMsgId <user>-<text>."""
    return helpers.send_frame(chat_id, f"{who.user_id}-{text}", text.encode())


def send(ledger: Ledger, who: Caller, chat_id: str, text: str, clock: Callable[[], float] = time.time) -> int:
    return send_message(ledger, who, send_frame(who, chat_id, text), POLICY, clock=clock).ack.seq


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


def sync_frame(cursors: dict[str, int] | None = None, limit: int | None = None) -> SyncFrame:
    data: dict[str, Any] = {"action": "sync", "requestId": "r1", "cursors": cursors or {}}
    if limit is not None:
        data["limit"] = limit
    return SyncFrame.model_validate(data)


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


# --- holes: seqs reserved and never written --------------------------------------------------------


def at(seconds: float) -> Callable[[], float]:
    return lambda: seconds


def hole(ledger: Ledger, chat_id: str, at_s: float) -> int:
    """A seq reserved at `at_s` by a writer that never stores anything there."""
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None
    return ledger.sequencer.reserve(chat_id, chat.members_version, int(at_s * 1000)).head_seq


def frames_of(poster: Any) -> list[tuple[str, str, int]]:
    return [(f["type"], f["chatId"], f["seq"]) for f in poster.frames()]


def stored_kinds(aws_env: Any, chat_id: str) -> dict[int, str]:
    return {int(m["seq"]): m.get("kind", "MESSAGE") for m in aws_env.messages(chat_id)}


@pytest.fixture
def holey(ledger: Ledger, make_chat: MakeChat) -> str:
    """alice + bob: messages at 1 and 2, a hole at 3 (reserved at T0), a message at 4; all at T0."""
    chat_id = make_chat("u_alice", "u_bob", chat_id="c_holey")
    alice, bob = caller("u_alice"), caller("u_bob")
    assert [send(ledger, alice, chat_id, "1", at(T0)), send(ledger, bob, chat_id, "2", at(T0))] == [1, 2]
    assert hole(ledger, chat_id, T0) == 3
    assert send(ledger, alice, chat_id, "4", at(T0)) == 4
    return chat_id


def test_a_hole_past_the_grace_is_voided_and_replayed_in_order(
    aws_env: Any, ledger: Ledger, holey: str, poster: Any
) -> None:
    # Given a chat whose seq 3 was reserved and never written, more than the grace ago
    # When alice syncs it from the start
    done = sync(ledger, poster, caller("u_alice"), sync_frame(), GRACE_S, at(T0 + GRACE_S + 1))
    # Then she gets every seq once, in order, seq 3 as a VOID frame naming only chat and seq
    assert frames_of(poster) == [
        ("MESSAGE", holey, 1),
        ("MESSAGE", holey, 2),
        ("VOID", holey, 3),
        ("MESSAGE", holey, 4),
    ]
    assert poster.frames()[2] == {"type": "VOID", "chatId": holey, "seq": 3}
    assert (done.heads, done.more) == ({holey: 4}, False)
    # And the messages table now holds a VOID at seq 3 (pushed by the fan-out, like big groups)
    assert stored_kinds(aws_env, holey) == {1: "MESSAGE", 2: "MESSAGE", 3: "VOID", 4: "MESSAGE"}
    assert aws_env.messages(holey)[2]["fanout"] == "queued"
    # And syncing again replays that same VOID, without storing anything more
    poster.posts.clear()
    sync(ledger, poster, caller("u_bob"), sync_frame({holey: 2}), GRACE_S, at(T0 + 60))
    assert frames_of(poster) == [("VOID", holey, 3), ("MESSAGE", holey, 4)]
    assert len(aws_env.messages(holey)) == 4


def test_a_younger_hole_ends_that_chats_run_for_now(
    aws_env: Any, ledger: Ledger, poster: Any, make_chat: MakeChat
) -> None:
    # Given a chat with a hole at 3 (reserved at T0) below a message stored at T0 + 3, and a
    # second chat of alice (listed after it) with one message
    alice = caller("u_alice")
    chat_id, other = make_chat("u_alice", "u_bob", chat_id="c_a"), make_chat("u_alice", chat_id="c_b")
    for text in ("1", "2"):
        send(ledger, alice, chat_id, text, at(T0))
    hole(ledger, chat_id, T0)
    send(ledger, alice, chat_id, "4", at(T0 + 3))
    send(ledger, alice, other, "b", at(T0))
    # When alice syncs at T0 + 6 (the hole is only known to be 3 s old: younger than the grace)
    done = sync(ledger, poster, alice, sync_frame(), GRACE_S, at(T0 + 6))
    # Then that chat's run stops before the hole (nothing after it is sent), the other chat's
    # run still comes, and more is false: the client asks again later
    assert frames_of(poster) == [("MESSAGE", chat_id, 1), ("MESSAGE", chat_id, 2), ("MESSAGE", other, 1)]
    assert (done.heads, done.more) == ({chat_id: 4, other: 1}, False)
    # And the hole was left for its writer: nothing stored at seq 3
    assert 3 not in stored_kinds(aws_env, chat_id)
    # And once past the grace, the next sync from her cursors voids it and goes on
    poster.posts.clear()
    sync(ledger, poster, alice, sync_frame({chat_id: 2, other: 1}), GRACE_S, at(T0 + 3 + GRACE_S))
    assert frames_of(poster) == [("VOID", chat_id, 3), ("MESSAGE", chat_id, 4)]


def test_holes_at_the_head_are_judged_by_when_the_head_moved(
    aws_env: Any, ledger: Ledger, poster: Any, make_chat: MakeChat
) -> None:
    # Given messages 1 and 2 sent at T0, then seqs 3 and 4 reserved at T0 + 10 and never written
    alice = caller("u_alice")
    chat_id = make_chat("u_alice", "u_bob")
    for text in ("1", "2"):
        send(ledger, alice, chat_id, text, at(T0))
    assert [hole(ledger, chat_id, T0 + 10), hole(ledger, chat_id, T0 + 10)] == [3, 4]
    # When alice syncs 1 s after the head moved (the last message is 11 s old by then)
    done = sync(ledger, poster, alice, sync_frame(), GRACE_S, at(T0 + 11))
    # Then she gets 1 and 2 only: the holes are young, nothing is stored for them
    assert frames_of(poster) == [("MESSAGE", chat_id, 1), ("MESSAGE", chat_id, 2)]
    assert (done.heads, done.more) == ({chat_id: 4}, False)
    assert sorted(stored_kinds(aws_env, chat_id)) == [1, 2]
    # And when she syncs again once the head is older than the grace, both come as VOIDs
    poster.posts.clear()
    done = sync(ledger, poster, alice, sync_frame({chat_id: 2}), GRACE_S, at(T0 + 10 + GRACE_S))
    assert frames_of(poster) == [("VOID", chat_id, 3), ("VOID", chat_id, 4)]
    assert done.more is False
    assert stored_kinds(aws_env, chat_id) == {1: "MESSAGE", 2: "MESSAGE", 3: "VOID", 4: "VOID"}


def test_a_void_counts_toward_the_limit(ledger: Ledger, holey: str, poster: Any) -> None:
    # Given the chat with an old hole at 3 and messages at 1, 2, 4
    alice, later = caller("u_alice"), at(T0 + GRACE_S + 1)
    # When alice syncs 3 at a time
    first = sync(ledger, poster, alice, sync_frame(limit=3), GRACE_S, later)
    # Then the first call brings 1, 2 and the VOID at 3, and says there is more
    assert frames_of(poster) == [("MESSAGE", holey, 1), ("MESSAGE", holey, 2), ("VOID", holey, 3)]
    assert first.more is True
    # And the next, from her cursor, brings 4 and says there is no more
    poster.posts.clear()
    second = sync(ledger, poster, alice, sync_frame({holey: 3}, limit=3), GRACE_S, later)
    assert frames_of(poster) == [("MESSAGE", holey, 4)]
    assert second.more is False


class Stalled(Exception):
    def __init__(self, message: StoredMessage) -> None:
        super().__init__(message.seq)
        self.message = message


def test_a_fill_racing_a_late_writer_replays_the_writers_message(
    aws_env: Any, ledger: Ledger, poster: Any, make_chat: MakeChat
) -> None:
    # Given bob's send recorded seq 2 and stalled before storing it, with alice's 1 and 3 around it
    alice, bob = caller("u_alice"), caller("u_bob")
    chat_id = make_chat("u_alice", "u_bob")
    send(ledger, alice, chat_id, "1", at(T0))

    class Stalling(Proxy):
        def put_message(self, message: StoredMessage) -> None:
            raise Stalled(message)

    with pytest.raises(Stalled) as stalled:
        send_message(
            dataclasses.replace(ledger, messages=Stalling(ledger.messages)),
            bob,
            send_frame(bob, chat_id, "late"),
            POLICY,
            clock=at(T0),
        )
    send(ledger, alice, chat_id, "3", at(T0))

    class WriterLandsFirst(Proxy):
        def fill_void(self, void: StoredVoid) -> Any:
            self.real.put_message(stalled.value.message)  # bob's send resumes just before the fill
            return self.real.fill_void(void)

    # When alice syncs once the hole is past the grace, and bob's message lands just before the VOID
    racing = dataclasses.replace(ledger, messages=WriterLandsFirst(ledger.messages))
    sync(ledger=racing, poster=poster, caller=alice, frame=sync_frame(), grace_s=GRACE_S, clock=at(T0 + 60))
    # Then she gets bob's message at seq 2, not a VOID, and no VOID was stored
    assert frames_of(poster) == [("MESSAGE", chat_id, 1), ("MESSAGE", chat_id, 2), ("MESSAGE", chat_id, 3)]
    assert poster.frames()[1]["serverMsgId"] == stalled.value.message.server_msg_id
    assert poster.frames()[1]["from"] == "u_bob"
    assert stored_kinds(aws_env, chat_id) == {1: "MESSAGE", 2: "MESSAGE", 3: "MESSAGE"}
    # And bob's retry is answered with that very message's ACK
    retry = send_message(ledger, bob, send_frame(bob, chat_id, "late"), POLICY, clock=at(T0 + 60))
    assert (retry.ack.seq, retry.ack.server_msg_id) == (2, stalled.value.message.server_msg_id)


def test_a_change_in_flight_voided_by_sync_is_cleared(
    aws_env: Any, ledger: Ledger, poster: Any, make_chat: MakeChat
) -> None:
    # Given alice began adding carol at T0 (the change holds seq 2) and died before committing
    alice = caller("u_alice")
    chat_id = make_chat("u_alice", "u_bob")
    send(ledger, alice, chat_id, "1", at(T0))
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None
    token = uuid.uuid4().hex
    assert ledger.sequencer.begin_change(chat_id, chat.members_version, token, int(T0 * 1000)) == 2
    # When alice syncs once it is past the grace
    sync(ledger, poster, alice, sync_frame(), GRACE_S, at(T0 + GRACE_S + 1))
    # Then the change's seq is replayed as a VOID
    assert frames_of(poster) == [("MESSAGE", chat_id, 1), ("VOID", chat_id, 2)]
    # And META no longer has a change in flight, so it can never commit
    meta = next(i for i in aws_env.scan("chats") if i["chatId"] == chat_id and i["sk"] == "META")
    assert "changeToken" not in meta and "changeSeq" not in meta
    note = announcement(chat_id, 2, "added", ["u_carol"], "u_alice", chat.members_version + 1, T0)
    with pytest.raises(ChangeLost):
        ledger.chats.members.commit_change(chat, token, note, {"u_carol": "member"}, {})

    # And a send no longer waits: it goes straight to seq 3
    def no_wait(seconds: float) -> None:
        raise AssertionError(f"the send waited {seconds} s for a cleared change")

    bob = caller("u_bob")
    sent = send_message(ledger, bob, send_frame(bob, chat_id, "b"), POLICY, clock=at(T0 + 60), sleep=no_wait)
    assert sent.ack.seq == 3
