"""send (logic/send.py, sequencing v2): gapless per-chat seqs, exactly once per clientMsgId, no
contention refusal, and the write cost of a send. Races against leases, VOIDs and membership
changes are in test_send_races.py."""

from __future__ import annotations

import base64
import dataclasses
import threading
from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.send_store import SendContext
from chat_backend.errors import Forbidden, NotFound
from chat_backend.logic.send import Ledger, send_message
from chat_backend.models.common import new_server_msg_id, now_iso, seq_of_server_msg_id
from chat_backend.models.records import StoredMedia, StoredMessage
from chat_backend.models.server_frames import AckFrame
from tests.unit.helpers import (
    POLICY,
    CountingDdb,
    LockedDdb,
    MakeChat,
    Proxy,
    caller,
    claims,
    head_of,
    ledger_on,
    remove,
    run_threads,
    send_frame,
)


def upload(store: ChatStore, chat_id: str, media_id: str) -> None:
    """Media alice uploaded to the chat (not yet attached to a message)."""
    media = StoredMedia(
        chat_id=chat_id,
        media_id=media_id,
        uploader="u_alice",
        content_type="image/png",
        size=10,
        created_at=now_iso(),
    )
    store.media.put(media)


def reading_together(ledger: Ledger, parties: int) -> Ledger:
    """The ledger whose sends, one per thread, each wait after reading their send context until
    all `parties` have read theirs: every one of them reads before any of them writes."""
    barrier = threading.Barrier(parties, timeout=30)
    local = threading.local()

    class ReadTogether(Proxy):
        def context(self, *args: Any) -> SendContext:
            context = self.real.context(*args)
            if not getattr(local, "waited", False):
                local.waited = True
                barrier.wait()
            return context

    return dataclasses.replace(ledger, sends=ReadTogether(ledger.sends))


def test_seqs_start_at_1_and_are_gapless(aws_env: Any, ledger: Ledger, chat_id: str) -> None:
    # Given a new chat of alice and bob
    alice, bob = caller("u_alice"), caller("u_bob")
    # When they send three messages in turn
    acks = [
        send_message(ledger, alice, send_frame(chat_id, "a-1"), POLICY).ack,
        send_message(ledger, bob, send_frame(chat_id, "b-1"), POLICY).ack,
        send_message(ledger, alice, send_frame(chat_id, "a-2"), POLICY).ack,
    ]
    # Then the ACKs carry seq 1, 2, 3, the store holds exactly those, and the head is 3
    assert [a.seq for a in acks] == [1, 2, 3]
    assert len({a.server_msg_id for a in acks}) == 3
    stored = aws_env.messages(chat_id)
    assert [(m["seq"], m["sender"], m["serverMsgId"]) for m in stored] == [
        (1, "u_alice", acks[0].server_msg_id),
        (2, "u_bob", acks[1].server_msg_id),
        (3, "u_alice", acks[2].server_msg_id),
    ]
    assert head_of(ledger, chat_id) == 3


def test_seqs_are_per_chat(ledger: Ledger, make_chat: MakeChat) -> None:
    # Given two chats of alice
    chat_a, chat_b = make_chat("u_alice", "u_bob"), make_chat("u_alice", "u_carol")
    alice = caller("u_alice")
    # When she sends to the first, then the second, then the first again
    seqs = [
        send_message(ledger, alice, send_frame(chat_a, "1"), POLICY).ack.seq,
        send_message(ledger, alice, send_frame(chat_b, "2"), POLICY).ack.seq,
        send_message(ledger, alice, send_frame(chat_a, "3"), POLICY).ack.seq,
    ]
    # Then each chat counts on its own from 1
    assert seqs == [1, 1, 2]


def test_many_concurrent_senders_into_one_chat_all_get_distinct_gapless_seqs(
    aws_env: Any, store: ChatStore, make_chat: MakeChat
) -> None:
    # Given 8 members of one chat, each about to send 3 messages from its own thread, all of
    # whom read the chat (head 0) before any of them reserves a seq
    users = [f"u_{n}" for n in range(8)]
    chat_id = make_chat(*users)
    locked = ledger_on(LockedDdb(store.ddb))
    racing = reading_together(locked, len(users))
    acks: list[AckFrame] = []
    errors: list[BaseException] = []

    def send_all(user: str) -> None:
        try:
            for n in range(3):
                acks.append(
                    send_message(racing, caller(user), send_frame(chat_id, f"{user}-{n}"), POLICY).ack
                )
        except BaseException as exc:  # surfaced below (a RateLimited would be a refusal)
            errors.append(exc)

    # When they all send at once
    run_threads(send_all, [(u,) for u in users])
    # Then nobody is refused, every send is ACKed once, and the seqs are exactly 1..24
    assert errors == []
    assert len(acks) == 24
    assert sorted(a.seq for a in acks) == list(range(1, 25))
    assert len({(a.chat_id, a.client_msg_id) for a in acks}) == 24
    # And the store holds each ACKed message at its ACKed seq, and the head is 24
    stored = {int(m["seq"]): m["serverMsgId"] for m in aws_env.messages(chat_id)}
    assert stored == {a.seq: a.server_msg_id for a in acks}
    assert head_of(locked, chat_id) == 24


def test_retried_send_returns_identical_ack_and_writes_nothing(
    aws_env: Any, store: ChatStore, chat_id: str
) -> None:
    # Given alice's send was accepted
    alice = caller("u_alice")
    counted = CountingDdb(store.ddb)
    ledger = ledger_on(counted)
    first = send_message(ledger, alice, send_frame(chat_id, "cm-retry"), POLICY)
    chats_before, messages_before = aws_env.scan("chats"), aws_env.messages(chat_id)
    counted.calls.clear()
    # When she retries it (same clientMsgId) twice, say after a lost ACK
    retries = [send_message(ledger, alice, send_frame(chat_id, "cm-retry"), POLICY) for _ in range(2)]
    # Then every answer is the same ACK (serverMsgId, seq, createdAt) and the same stored message
    assert [r.ack for r in retries] == [first.ack] * 2
    assert [r.message for r in retries] == [first.message] * 2
    # And nothing was written: at most the claim was tried again (a conditional put that fails,
    # the warm function knowing alice is a member), same items, head still 1
    assert {w for w in counted.writes()} <= {("put_item", "unit-chats", "DEDUP")}
    assert aws_env.scan("chats") == chats_before
    assert aws_env.messages(chat_id) == messages_before
    # And the retry reserved no seq: the next new message takes seq 2
    assert send_message(ledger, alice, send_frame(chat_id, "cm-next"), POLICY).ack.seq == 2


def test_same_client_msg_id_from_two_users_is_two_messages(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice and bob whose clients happen to pick the same clientMsgId
    # When both send with it
    a = send_message(ledger, caller("u_alice"), send_frame(chat_id, "same"), POLICY).ack
    b = send_message(ledger, caller("u_bob"), send_frame(chat_id, "same"), POLICY).ack
    # Then idempotency is per user: two messages, seq 1 and 2
    assert (a.seq, b.seq) == (1, 2)
    assert [m["sender"] for m in aws_env.messages(chat_id)] == ["u_alice", "u_bob"]


def test_concurrent_duplicates_make_one_message_and_one_seq(
    aws_env: Any, store: ChatStore, chat_id: str
) -> None:
    # Given four threads sending the same (user, clientMsgId), all of which read "no claim yet"
    # before any of them claims it
    locked = ledger_on(LockedDdb(store.ddb))
    racing = reading_together(locked, 4)
    acks: list[AckFrame] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            acks.append(send_message(racing, caller("u_alice"), send_frame(chat_id, "cm-race"), POLICY).ack)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    # When they all run
    run_threads(send, [()] * 4)
    # Then all get the same ACK, one message exists, and only one seq was reserved
    assert errors == []
    assert len(acks) == 4 and all(a == acks[0] for a in acks)
    assert acks[0].seq == 1
    assert [m["serverMsgId"] for m in aws_env.messages(chat_id)] == [acks[0].server_msg_id]
    assert head_of(locked, chat_id) == 1
    assert len(claims(aws_env, chat_id)) == 1
    # And the next new message takes the next seq
    assert send_message(locked, caller("u_alice"), send_frame(chat_id, "cm-next"), POLICY).ack.seq == 2


def test_non_member_is_forbidden_and_nothing_is_written(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given a chat of bob and carol
    chat_id = make_chat("u_bob", "u_carol")
    chats_before = aws_env.scan("chats")
    # When mallory sends to it
    # Then FORBIDDEN, and no message, no head move, no claim
    with pytest.raises(Forbidden) as err:
        send_message(ledger, caller("u_mallory"), send_frame(chat_id, "cm"), POLICY)
    assert err.value.code == "FORBIDDEN"
    assert aws_env.messages() == []
    assert aws_env.scan("chats") == chats_before
    # And the next member's message still takes seq 1
    assert send_message(ledger, caller("u_bob"), send_frame(chat_id, "b-1"), POLICY).ack.seq == 1


@pytest.mark.parametrize("whose", ["unknown", "other-chat"])
def test_media_not_of_this_chat_is_not_found_and_nothing_is_written(
    whose: str, aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given alice's chat with bob, and a media id that is unknown or was uploaded to another chat
    chat_id, other = make_chat("u_alice", "u_bob"), make_chat("u_alice", "u_carol")
    if whose == "other-chat":
        upload(ledger.chats, other, "md_1")
    chats_before = aws_env.scan("chats")
    # When alice sends a message to the chat with bob naming that media
    # Then NOT_FOUND, and nothing is written: no message, no head move, no claim, media untouched
    with pytest.raises(NotFound) as err:
        send_message(ledger, caller("u_alice"), send_frame(chat_id, "cm", media=["md_1"]), POLICY)
    assert err.value.code == "NOT_FOUND"
    assert aws_env.messages() == []
    assert aws_env.scan("chats") == chats_before
    # And her next message takes seq 1
    assert send_message(ledger, caller("u_alice"), send_frame(chat_id, "cm-2"), POLICY).ack.seq == 1


def test_a_plain_send_is_four_single_item_writes(aws_env: Any, store: ChatStore, chat_id: str) -> None:
    # Given a chat with a message in it already, and a client that counts calls
    counted = CountingDdb(store.ddb)
    ledger = ledger_on(counted)
    send_message(ledger, caller("u_bob"), send_frame(chat_id, "warm-up"), POLICY)
    counted.calls.clear()
    # When alice sends a message without media
    ack = send_message(ledger, caller("u_alice"), send_frame(chat_id, "cm"), POLICY).ack
    # Then exactly four single-item writes happened, in order: claim, reserve, record, message
    chats, messages = aws_env.tables["chats"], aws_env.tables["messages"]
    assert counted.writes() == [
        ("put_item", chats, "DEDUP"),
        ("update_item", chats, "META"),
        ("update_item", chats, "DEDUP"),
        ("put_item", messages, "seq 2"),
    ]
    assert ack.seq == 2
    # And no transaction at all
    assert all(name != "transact_write_items" for name, _ in counted.calls)


def test_a_known_senders_next_send_reads_nothing_before_its_writes(
    aws_env: Any, store: ChatStore, chat_id: str
) -> None:
    # Given alice sent once through this (warm) function
    counted = CountingDdb(store.ddb)
    ledger = ledger_on(counted)
    alice = caller("u_alice")
    send_message(ledger, alice, send_frame(chat_id, "first"), POLICY)
    counted.calls.clear()
    # When she sends again
    ack = send_message(ledger, alice, send_frame(chat_id, "second"), POLICY).ack
    # Then the four writes are the only calls: her membership was checked by the reservation
    assert [name for name, _ in counted.calls] == ["put_item", "update_item", "update_item", "put_item"]
    assert ack.seq == 2


def test_a_member_removed_since_its_last_send_is_refused_even_by_a_warm_function(
    aws_env: Any, store: ChatStore, make_chat: MakeChat
) -> None:
    # Given bob sent once through this (warm) function, then was removed by alice
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    ledger = ledger_on(store.ddb)
    bob = caller("u_bob")
    send_message(ledger, bob, send_frame(chat_id, "before"), POLICY)
    remove(ledger, caller("u_alice"), chat_id, ["u_bob"], POLICY.hole_grace_s)
    items_before = aws_env.scan("chats")
    # When bob sends again
    with pytest.raises(Forbidden):
        send_message(ledger, bob, send_frame(chat_id, "after"), POLICY)
    # Then nothing of it is left (its claim was released) and no seq was reserved after the removal
    assert aws_env.scan("chats") == items_before
    assert [m["seq"] for m in aws_env.messages(chat_id)] == [1, 2]


def test_a_send_with_media_marks_it_in_the_message_transaction(
    aws_env: Any, store: ChatStore, chat_id: str
) -> None:
    # Given media alice uploaded to her chat with bob
    upload(store, chat_id, "md_1")
    counted = CountingDdb(store.ddb)
    # When she sends a message naming it
    sent = send_message(
        ledger_on(counted), caller("u_alice"), send_frame(chat_id, "cm", media=["md_1"]), POLICY
    )
    # Then claim, reserve and record are single writes, and the message goes with the media mark
    chats = aws_env.tables["chats"]
    assert counted.writes() == [
        ("put_item", chats, "DEDUP"),
        ("update_item", chats, "META"),
        ("update_item", chats, "DEDUP"),
        ("transact_write_items", "*", "*"),
    ]
    # And the message names the media, which is now attached
    assert [m["mediaIds"] for m in aws_env.messages(chat_id)] == [["md_1"]]
    assert sent.message.media_ids == ["md_1"]
    media = store.media.get(chat_id, "md_1")
    assert media is not None and media.attached


def test_store_holds_the_ciphertext_bytes_exactly_as_sent(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given bytes that are not text (every byte value, NULs included)
    data = b"\x00" + bytes(range(255, -1, -1)) + b"\x00\x00"
    chat_id = make_chat("u_alice", "u_bob")
    # When alice sends them
    send_message(ledger, caller("u_alice", "d_tablet"), send_frame(chat_id, "bin", data), POLICY)
    # Then the table item and the replayed message hold exactly those bytes
    [item] = aws_env.messages(chat_id)
    assert bytes(item["ciphertext"]) == data
    [replayed] = ledger.messages.after(chat_id, 0, 10)
    assert isinstance(replayed, StoredMessage)
    assert replayed.ciphertext == data
    assert (replayed.sender, replayed.sender_device) == ("u_alice", "d_tablet")
    assert base64.b64decode(replayed.to_frame().ciphertext) == data


def test_server_msg_id_names_its_seq(ledger: Ledger, make_chat: MakeChat) -> None:
    # Given two ids minted for seq 7, and the id of a stored message
    a, b = new_server_msg_id(7), new_server_msg_id(7)
    chat_id = make_chat("u_alice", "u_bob")
    ack = send_message(ledger, caller("u_alice"), send_frame(chat_id, "cm"), POLICY).ack
    # When their seqs are read back
    # Then each names its seq, and ids for the same seq still differ
    assert (seq_of_server_msg_id(a), seq_of_server_msg_id(b)) == (7, 7)
    assert a != b and a.startswith("m_7_")
    assert seq_of_server_msg_id(ack.server_msg_id) == ack.seq == 1


@pytest.mark.parametrize("bad", ["", "m", "m_7", "m_x_abc", "x_7_abc", "m_7_abc_def", "m_-7_abc", "7"])
def test_an_id_not_minted_here_names_no_seq(bad: str) -> None:
    # Given a server message id not of the form m_<seq>_<random>
    # When its seq is asked for
    # Then there is none
    assert seq_of_server_msg_id(bad) is None
