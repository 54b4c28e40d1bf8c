"""send (logic/send.py + dal/chat_store.py): gapless per-chat seqs, exactly once per clientMsgId."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore, HeadMoved, SendContext
from chat_backend.errors import Forbidden, RateLimited
from chat_backend.logic import send as send_logic
from chat_backend.logic.send import send_message
from chat_backend.models import AckFrame, Caller, ChatMeta, SendFrame, StoredMessage
from tests.unit.conftest import LockedDdb

DEDUP_TTL_S = 3600


def frame(chat_id: str, client_msg_id: str, data: bytes = b"ciphertext") -> SendFrame:
    return SendFrame.model_validate(
        {
            "action": "send",
            "clientMsgId": client_msg_id,
            "chatId": chat_id,
            "ciphertext": base64.b64encode(data).decode(),
        }
    )


def ack_key(ack: AckFrame) -> tuple[str, int, str]:
    return (ack.server_msg_id, ack.seq, ack.created_at)


def head_of(store: ChatStore, chat_id: str) -> int:
    chat = store.get_chat(chat_id)
    assert chat is not None
    return chat.head_seq


class StoreProxy:
    """Delegates to a real ChatStore; subclasses hook one method to stage a race."""

    def __init__(self, store: ChatStore) -> None:
        self.real = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_seqs_start_at_1_and_are_gapless(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given a new chat of alice and bob
    chat_id = make_chat("u_alice", "u_bob")
    alice, bob = make_caller("u_alice"), make_caller("u_bob")
    # When they send three messages in turn
    acks = [
        send_message(store, alice, frame(chat_id, "a-1"), DEDUP_TTL_S),
        send_message(store, bob, frame(chat_id, "b-1"), DEDUP_TTL_S),
        send_message(store, alice, frame(chat_id, "a-2"), DEDUP_TTL_S),
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
    assert head_of(store, chat_id) == 3


def test_seqs_are_per_chat(
    store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given two chats of alice
    chat_a, chat_b = make_chat("u_alice", "u_bob"), make_chat("u_alice", "u_carol")
    alice = make_caller("u_alice")
    # When she sends to the first, then the second, then the first again
    seqs = [
        send_message(store, alice, frame(chat_a, "1"), DEDUP_TTL_S).seq,
        send_message(store, alice, frame(chat_b, "2"), DEDUP_TTL_S).seq,
        send_message(store, alice, frame(chat_a, "3"), DEDUP_TTL_S).seq,
    ]
    # Then each chat counts on its own from 1
    assert seqs == [1, 1, 2]


def test_retried_send_returns_identical_ack_and_stores_one_message(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given alice's send was accepted
    chat_id = make_chat("u_alice", "u_bob")
    alice = make_caller("u_alice")
    first = send_message(store, alice, frame(chat_id, "cm-retry"), DEDUP_TTL_S)
    # When she retries it (same clientMsgId) twice, say after a lost ACK
    retries = [send_message(store, alice, frame(chat_id, "cm-retry"), DEDUP_TTL_S) for _ in range(2)]
    # Then every answer is the same ACK (serverMsgId, seq, createdAt) and one message exists
    assert all(r == first for r in retries)
    assert [ack_key(r) for r in retries] == [ack_key(first)] * 2
    assert [m["serverMsgId"] for m in aws_env.messages(chat_id)] == [first.server_msg_id]
    assert head_of(store, chat_id) == 1
    # And the next new message still gets seq 2
    assert send_message(store, alice, frame(chat_id, "cm-next"), DEDUP_TTL_S).seq == 2


def test_same_client_msg_id_from_two_users_is_two_messages(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given alice and bob whose clients happen to pick the same clientMsgId
    chat_id = make_chat("u_alice", "u_bob")
    # When both send with it
    a = send_message(store, make_caller("u_alice"), frame(chat_id, "same"), DEDUP_TTL_S)
    b = send_message(store, make_caller("u_bob"), frame(chat_id, "same"), DEDUP_TTL_S)
    # Then idempotency is per user: two messages, seq 1 and 2
    assert (a.seq, b.seq) == (1, 2)
    assert [m["sender"] for m in aws_env.messages(chat_id)] == ["u_alice", "u_bob"]


def test_concurrent_duplicate_sends_from_threads_store_one_message(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given two threads sending the same (user, clientMsgId), both reading the empty head
    # before either writes (a barrier right after the read forces that interleaving)
    chat_id = make_chat("u_alice", "u_bob")
    locked = ChatStore(store.chats_table, store.messages_table, ddb=LockedDdb(store.ddb))
    barrier = threading.Barrier(2, timeout=10)
    waited = threading.local()

    class RacingStore(StoreProxy):
        def send_context(self, chat_id: str, user_id: str, client_msg_id: str) -> SendContext:
            context = self.real.send_context(chat_id, user_id, client_msg_id)
            if not getattr(waited, "done", False):
                waited.done = True
                barrier.wait()
            return context

    racing = RacingStore(locked)
    acks: list[AckFrame] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            acks.append(send_message(racing, make_caller("u_alice"), frame(chat_id, "cm-race"), DEDUP_TTL_S))  # type: ignore[arg-type]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(2)]
    # When both run
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # Then both get the same ACK, and one message with one seq exists
    assert errors == []
    assert len(acks) == 2 and acks[0] == acks[1]
    assert acks[0].seq == 1
    assert [m["serverMsgId"] for m in aws_env.messages(chat_id)] == [acks[0].server_msg_id]
    assert head_of(store, chat_id) == 1


def test_lost_dedup_race_answers_the_winners_ack(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given a send whose duplicate (same user, same clientMsgId) is stored by another request
    # between this one's read and its write, so this one's transaction is cancelled on the dedup record
    chat_id = make_chat("u_alice", "u_bob")
    alice = make_caller("u_alice")
    winner: list[AckFrame] = []

    class LosingStore(StoreProxy):
        def append_message(self, message: StoredMessage, client_msg_id: str, dedup_expires_at: int) -> None:
            if not winner:
                winner.append(send_message(self.real, alice, frame(chat_id, client_msg_id), DEDUP_TTL_S))
            self.real.append_message(message, client_msg_id, dedup_expires_at)

    # When the losing send completes
    loser = send_message(LosingStore(store), alice, frame(chat_id, "cm-dup"), DEDUP_TTL_S)  # type: ignore[arg-type]
    # Then it answers the winner's ACK, and only the winner's message is stored
    assert ack_key(loser) == ack_key(winner[0])
    assert [m["serverMsgId"] for m in aws_env.messages(chat_id)] == [winner[0].server_msg_id]
    assert head_of(store, chat_id) == 1


def test_head_moved_between_read_and_write_retries_with_next_seq(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given bob's message lands after alice's send read head 0 but before it wrote seq 1
    chat_id = make_chat("u_alice", "u_bob")
    bob_acks: list[AckFrame] = []
    attempts: list[int] = []
    sleeps: list[float] = []

    class InterleavedStore(StoreProxy):
        def append_message(self, message: StoredMessage, client_msg_id: str, dedup_expires_at: int) -> None:
            attempts.append(message.seq)
            if not bob_acks:
                bob = make_caller("u_bob")
                bob_acks.append(send_message(self.real, bob, frame(chat_id, "bob-1"), DEDUP_TTL_S))
            self.real.append_message(message, client_msg_id, dedup_expires_at)

    # When alice's send completes
    ack = send_message(
        InterleavedStore(store),  # type: ignore[arg-type]
        make_caller("u_alice"),
        frame(chat_id, "alice-1", b"from alice"),
        DEDUP_TTL_S,
        sleep=sleeps.append,
    )
    # Then it tried seq 1, then seq 2, and was stored as seq 2 after bob's seq 1: no gap
    assert attempts == [1, 2]
    assert all(0 <= s <= 0.2 for s in sleeps)
    assert (bob_acks[0].seq, ack.seq) == (1, 2)
    stored = aws_env.messages(chat_id)
    assert [(m["seq"], m["sender"], bytes(m["ciphertext"])) for m in stored] == [
        (1, "u_bob", b"ciphertext"),
        (2, "u_alice", b"from alice"),
    ]


def test_append_at_a_taken_seq_raises_head_moved_and_writes_nothing(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given a chat whose head is 1
    chat_id = make_chat("u_alice", "u_bob")
    first = send_message(store, make_caller("u_alice"), frame(chat_id, "first"), DEDUP_TTL_S)
    stale = StoredMessage(
        chat_id=chat_id,
        seq=1,
        server_msg_id="m_stale",
        sender="u_bob",
        sender_device="d_phone",
        ciphertext=b"x",
        media_ids=[],
        created_at="2026-11-28T03:21:07.123Z",
    )
    # When a send computed from the old head (seq 1) is appended
    # Then the store refuses it as HeadMoved and keeps no trace of it (no message, no dedup record)
    with pytest.raises(HeadMoved) as err:
        store.append_message(stale, "stale-cm", 2_000_000_000)
    assert err.value.head_seq == 1  # the head that won, so the sender can retry above it
    assert [m["serverMsgId"] for m in aws_env.messages(chat_id)] == [first.server_msg_id]
    assert store.previous_send(chat_id, "u_bob", "stale-cm") is None
    assert head_of(store, chat_id) == 1


class BusyStore:
    """A chat whose head moves under every attempt."""

    def __init__(self, report_head: bool) -> None:
        self.report_head = report_head
        self.appends = 0
        self.reads = 0

    def send_context(self, chat_id: str, user_id: str, client_msg_id: str) -> SendContext:
        self.reads += 1
        meta = ChatMeta(
            chat_id=chat_id, kind="group", name=None, head_seq=self.appends, member_count=2, created_at="t"
        )
        return SendContext(chat=meta, role="member", previous=None)

    def append_message(self, message: StoredMessage, client_msg_id: str, dedup_expires_at: int) -> None:
        self.appends += 1
        raise HeadMoved(self.appends if self.report_head else None)


@pytest.mark.parametrize("report_head", [True, False], ids=["lost-race", "contention"])
def test_send_gives_up_as_rate_limited_when_the_head_keeps_moving(
    report_head: bool, make_caller: Callable[..., Caller]
) -> None:
    # Given a chat whose head moves under every attempt (the store reports the winner's head,
    # or only that a conflicting transaction got in the way)
    busy = BusyStore(report_head)
    sleeps: list[float] = []
    # When alice sends
    # Then after a bounded number of attempts she is told RATE_LIMITED (retry with the same id)
    with pytest.raises(RateLimited) as err:
        send_message(busy, make_caller("u_alice"), frame("c_busy", "cm"), DEDUP_TTL_S, sleep=sleeps.append)  # type: ignore[arg-type]
    assert err.value.code == "RATE_LIMITED"
    assert busy.appends == send_logic.MAX_ATTEMPTS
    # And contention backs off (at most 0.2 s a time) instead of hammering the chat head
    assert all(0 <= s <= 0.2 for s in sleeps)
    if not report_head:
        assert len(sleeps) >= send_logic.MAX_ATTEMPTS - 1


def test_non_member_is_forbidden_and_nothing_is_written(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given a chat of bob and carol
    chat_id = make_chat("u_bob", "u_carol")
    chats_before = aws_env.scan("chats")
    # When mallory sends to it
    # Then Forbidden, and no message, head move or dedup record
    with pytest.raises(Forbidden) as err:
        send_message(store, make_caller("u_mallory"), frame(chat_id, "cm"), DEDUP_TTL_S)
    assert err.value.code == "FORBIDDEN"
    assert aws_env.messages() == []
    assert aws_env.scan("chats") == chats_before


def test_store_holds_the_ciphertext_bytes_exactly_as_sent(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given bytes that are not text (every byte value, NULs included)
    data = b"\x00" + bytes(range(255, -1, -1)) + b"\x00\x00"
    chat_id = make_chat("u_alice", "u_bob")
    # When alice sends them
    send_message(store, make_caller("u_alice", "d_tablet"), frame(chat_id, "bin", data), DEDUP_TTL_S)
    # Then the table item and the replayed message hold exactly those bytes
    [item] = aws_env.messages(chat_id)
    assert bytes(item["ciphertext"]) == data
    [replayed] = store.messages_after(chat_id, 0, 10)
    assert replayed.ciphertext == data
    assert (replayed.sender, replayed.sender_device) == ("u_alice", "d_tablet")
    assert base64.b64decode(replayed.to_frame().ciphertext) == data
