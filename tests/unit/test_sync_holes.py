"""sync (logic/sync.py) over holes: seqs reserved and never written are VOIDed once past the
grace, else end the chat's run for now; a VOID counts toward the limit, a late writer's message
wins over the fill, and a change in flight that sync voids can never commit."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from chat_backend.errors import ChangeLost
from chat_backend.logic.membership_changes import announcement
from chat_backend.logic.send import Ledger, send_message
from chat_backend.logic.sync import sync
from chat_backend.models.records import StoredMessage, StoredVoid
from tests.unit.helpers import T0, MakeChat, Proxy, caller
from tests.unit.syncing import GRACE_S, POLICY, send, send_frame, sync_frame


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
