"""send (logic/send.py) against what can happen between its steps: a duplicate while the claimant
works, a claimant that died (lease run out), a writer too slow for its seq (VOID), and membership
changes (a removal racing the send, a change in flight, one abandoned). Each race is staged
deterministically with a fake clock and a proxy around one store method."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from chat_backend.dal.send_store import SendContext
from chat_backend.errors import ChangeLost, Forbidden, RateLimited
from chat_backend.logic.membership_changes import announcement
from chat_backend.logic.send import Ledger, SendPolicy, send_message
from chat_backend.models.records import StoredMessage, StoredVoid
from tests.unit.helpers import (
    POLICY,
    T0,
    FakeClock,
    MakeChat,
    Proxy,
    caller,
    claims,
    head_of,
    layout,
    remove,
    send_frame,
)


class Crash(Exception):
    """The function died here (timeout, out of memory): nothing after this step ran."""


def crashing(ledger: Ledger, part: str, method: str) -> Ledger:
    """The ledger whose `part`.`method` crashes on its first call, before doing anything."""
    crashed: list[bool] = []

    class Crashing(Proxy):
        def __getattr__(self, name: str) -> Any:
            real = getattr(self.real, name)
            if name != method:
                return real

            def call(*args: Any, **kwargs: Any) -> Any:
                if not crashed:
                    crashed.append(True)
                    raise Crash(method)
                return real(*args, **kwargs)

            return call

    return dataclasses.replace(ledger, **{part: Crashing(getattr(ledger, part))})


# --- duplicates and leases ---------------------------------------------------------------------


def test_duplicate_during_the_claimants_lease_waits_for_its_answer(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice's send has claimed, reserved and recorded seq 1 and is about to store it
    alice = caller("u_alice")
    recorded, go = threading.Event(), threading.Event()

    class Paused(Proxy):
        def put_message(self, message: StoredMessage) -> None:
            recorded.set()
            assert go.wait(10)
            self.real.put_message(message)

    owner_result: list[Any] = []
    clock = FakeClock()
    owner = threading.Thread(
        target=lambda: owner_result.append(
            send_message(
                dataclasses.replace(ledger, messages=Paused(ledger.messages)),
                alice,
                send_frame(chat_id, "cm"),
                POLICY,
                clock=clock,
            )
        )
    )
    owner.start()
    assert recorded.wait(10)
    waits: list[float] = []

    def let_owner_finish(seconds: float) -> None:
        waits.append(seconds)
        go.set()
        owner.join(10)

    # When her retry (same clientMsgId) arrives then, well within the lease
    retry = send_message(
        ledger, alice, send_frame(chat_id, "cm"), POLICY, clock=clock, sleep=let_owner_finish
    )
    # Then it waited (and took nothing over) and answers the claimant's very ACK
    assert waits != []
    assert retry.ack == owner_result[0].ack
    # And one message exists at seq 1, with no VOID and no further seq
    assert layout(aws_env, chat_id) == [(1, "u_alice")]
    assert head_of(ledger, chat_id) == 1


def test_duplicate_gives_up_as_rate_limited_while_a_long_lease_holds(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice's send recorded seq 1 under a 30 s lease and then stalled
    alice = caller("u_alice")
    policy = SendPolicy(dedup_ttl_s=3600, lease_s=30, wait_s=1)
    clock = FakeClock()
    with pytest.raises(Crash):
        send_message(
            crashing(ledger, "messages", "put_message"), alice, send_frame(chat_id, "cm"), policy, clock=clock
        )
    # When her retry waits out its 1 s
    # Then it is told RATE_LIMITED, to come back once the lease has run out
    with pytest.raises(RateLimited) as err:
        send_message(ledger, alice, send_frame(chat_id, "cm"), policy, clock=clock, sleep=clock.sleep)
    assert 28_000 <= err.value.retry_after_ms <= 29_000
    assert 1 <= sum(clock.sleeps) <= 1.3
    # And it wrote nothing: no message, no VOID, no other seq
    assert layout(aws_env, chat_id) == []
    assert head_of(ledger, chat_id) == 1


@pytest.mark.parametrize(
    ("crash_in", "expected"),
    [
        # died after claiming, before reserving: nothing to void, the message takes seq 1
        (("sequencer", "reserve"), [(1, "u_alice")]),
        # died after reserving seq 1, before recording it: seq 1 stays a hole (sync voids it)
        (("sends", "record"), [(2, "u_alice")]),
        # died after recording seq 1, before storing: seq 1 is voided, the message lands at 2
        (("messages", "put_message"), [(1, "VOID"), (2, "u_alice")]),
    ],
    ids=["before-reserve", "before-record", "before-put"],
)
@pytest.mark.parametrize("retry_at", [6.0, 1.0], ids=["after-lease", "during-lease"])
def test_a_claim_whose_lease_ran_out_is_taken_over_and_stored_exactly_once(
    crash_in: tuple[str, str],
    expected: list[tuple[int, str]],
    retry_at: float,
    aws_env: Any,
    ledger: Ledger,
    chat_id: str,
) -> None:
    # Given alice's send claimed its clientMsgId (5 s lease) and died at some step
    alice = caller("u_alice")
    clock = FakeClock()
    with pytest.raises(Crash):
        send_message(crashing(ledger, *crash_in), alice, send_frame(chat_id, "cm"), POLICY, clock=clock)
    # When her retry arrives (after the lease, or during it: then it waits the lease out)
    clock.now = T0 + retry_at
    retry = send_message(ledger, alice, send_frame(chat_id, "cm"), POLICY, clock=clock, sleep=clock.sleep)
    # Then the message is stored once, at the seq of the ACK, and any recorded-but-empty seq is a VOID
    assert layout(aws_env, chat_id) == expected
    assert retry.ack.seq == expected[-1][0] == head_of(ledger, chat_id)
    assert [m["serverMsgId"] for m in aws_env.messages(chat_id) if m.get("sender")] == [
        retry.ack.server_msg_id
    ]
    # And it took over only once the lease had run out (waiting for that if need be)
    assert clock.now >= T0 + POLICY.lease_s
    assert (clock.sleeps == []) == (retry_at > POLICY.lease_s)
    # And a further retry answers the same ACK, writing nothing
    assert send_message(ledger, alice, send_frame(chat_id, "cm"), POLICY, clock=clock).ack == retry.ack
    assert layout(aws_env, chat_id) == expected
    assert len(claims(aws_env, chat_id)) == 1


def test_a_slow_writer_whose_seq_was_voided_sends_at_a_new_seq(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice's send reserved and recorded seq 1, and took so long that its seq was voided
    # (by a sync or a duplicate) just before it stores its message
    tried: list[int] = []

    class VoidedFirst(Proxy):
        def put_message(self, message: StoredMessage) -> None:
            tried.append(message.seq)
            if len(tried) == 1:
                self.real.fill_void(
                    StoredVoid(chat_id=chat_id, seq=message.seq, created_at=message.created_at)
                )
            self.real.put_message(message)

    slow = dataclasses.replace(ledger, messages=VoidedFirst(ledger.messages))
    # When the send goes on
    sent = send_message(slow, caller("u_alice"), send_frame(chat_id, "cm"), POLICY)
    # Then it found seq 1 taken, reserved again and stored the message at seq 2, exactly once
    assert tried == [1, 2]
    assert sent.ack.seq == 2
    assert layout(aws_env, chat_id) == [(1, "VOID"), (2, "u_alice")]
    assert aws_env.messages(chat_id)[1]["serverMsgId"] == sent.ack.server_msg_id
    # And a retry answers the ACK of seq 2
    assert send_message(ledger, caller("u_alice"), send_frame(chat_id, "cm"), POLICY).ack == sent.ack


# --- membership --------------------------------------------------------------------------------


def hooked_context(ledger: Ledger, hook: Callable[[], None]) -> Ledger:
    """The ledger whose first send-context read is followed by `hook` (before the send goes on)."""
    done: list[bool] = []

    class Hooked(Proxy):
        def context(self, *args: Any) -> SendContext:
            context = self.real.context(*args)
            if not done:
                done.append(True)
                hook()
            return context

    return dataclasses.replace(ledger, sends=Hooked(ledger.sends))


def test_a_send_racing_its_senders_removal_is_refused_not_sequenced_after_it(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given bob's send has read that he is a member, and alice's removal of bob commits right then
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    racing = hooked_context(ledger, lambda: remove(ledger, caller("u_alice"), chat_id, ["u_bob"]))
    # When bob's send goes on
    # Then it is FORBIDDEN
    with pytest.raises(Forbidden):
        send_message(racing, caller("u_bob"), send_frame(chat_id, "late"), POLICY)
    # And the chat holds only the removal announcement: nothing of bob after it
    assert layout(aws_env, chat_id) == [(1, "system")]
    assert head_of(ledger, chat_id) == 1
    # And his claim was released: nothing answers that clientMsgId
    assert claims(aws_env, chat_id) == []
    # And the next message is sequenced right after the announcement
    assert send_message(ledger, caller("u_carol"), send_frame(chat_id, "c-1"), POLICY).ack.seq == 2


def begin(ledger: Ledger, chat_id: str, at_s: float) -> tuple[Any, str, int]:
    """Begin a membership change (as members.py does) without committing it: the chat as read,
    the change's token, its seq."""
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None
    token = uuid.uuid4().hex
    seq = ledger.sequencer.begin_change(chat_id, chat.members_version, token, int(at_s * 1000))
    return chat, token, seq


def commit(ledger: Ledger, begun: tuple[Any, str, int], event: str, user: str, at_s: float) -> None:
    chat, token, seq = begun
    note = announcement(chat.chat_id, seq, event, [user], "u_alice", chat.members_version + 1, at_s)  # type: ignore[arg-type]
    added = {user: "member"} if event == "added" else {}
    ledger.chats.members.commit_change(chat, token, note, added, {user: 1} if event == "removed" else {})


def test_a_send_racing_a_removal_in_flight_waits_for_it_then_is_refused(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given bob's send has read that he is a member, and then alice's removal of bob begins
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    clock = FakeClock()
    begun: list[Any] = []
    racing = hooked_context(ledger, lambda: begun.append(begin(ledger, chat_id, clock())))
    commits: list[float] = []

    def removal_commits(seconds: float) -> None:
        if not commits:
            commit(ledger, begun[0], "removed", "u_bob", clock())
        commits.append(seconds)
        clock.sleep(seconds)

    # When bob's send goes on, and the removal commits while it waits
    # Then it is FORBIDDEN, after waiting for the change (not before)
    with pytest.raises(Forbidden):
        send_message(
            racing, caller("u_bob"), send_frame(chat_id, "late"), POLICY, clock=clock, sleep=removal_commits
        )
    assert len(commits) == 1
    # And the chat holds only the announcement, and bob's claim is gone
    assert layout(aws_env, chat_id) == [(1, "system")]
    assert claims(aws_env, chat_id) == []


def test_a_send_waits_for_a_change_in_flight_and_proceeds_after_it_commits(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice is adding carol: the change has its seq (1) but has not committed yet
    clock = FakeClock()
    begun = begin(ledger, chat_id, clock())
    waits: list[float] = []

    def add_commits_during_second_wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            commit(ledger, begun, "added", "u_carol", clock())
        clock.sleep(seconds)

    # When bob sends meanwhile
    sent = send_message(
        ledger,
        caller("u_bob"),
        send_frame(chat_id, "b-1"),
        POLICY,
        clock=clock,
        sleep=add_commits_during_second_wait,
    )
    # Then he waited (briefly, backing off) until the change committed, then sent at seq 2
    assert len(waits) == 2 and all(0 < w <= 0.2 for w in waits)
    assert sent.ack.seq == 2
    assert layout(aws_env, chat_id) == [(1, "system"), (2, "u_bob")]
    # And his message is sequenced under the membership that includes carol
    assert sent.message.members_version == 1
    assert sent.audience is not None and sorted(sent.audience) == ["u_alice", "u_bob", "u_carol"]


@pytest.mark.parametrize("sent_after", [6.0, 0.0], ids=["already-stale", "goes-stale-while-waiting"])
def test_a_change_in_flight_past_the_grace_is_abandoned_by_the_send(
    sent_after: float, aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice began adding carol at T0 and died before committing
    begun = begin(ledger, chat_id, T0)
    # When bob sends (5 s grace) once the change is 6 s old, or right away (and keeps waiting)
    clock = FakeClock(T0 + sent_after)
    sent = send_message(
        ledger, caller("u_bob"), send_frame(chat_id, "b-1"), POLICY, clock=clock, sleep=clock.sleep
    )
    # Then the change's seq became a VOID, and his message the next seq
    assert layout(aws_env, chat_id) == [(1, "VOID"), (2, "u_bob")]
    assert sent.ack.seq == 2
    # And only once the change was past the grace (a stale one is abandoned without waiting)
    assert clock.now - T0 >= POLICY.hole_grace_s
    assert (clock.sleeps == []) == (sent_after > POLICY.hole_grace_s)
    # And META has no change in flight; the abandoned change can never commit
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None and chat.change is None
    assert "changeToken" not in next(
        i for i in aws_env.scan("chats") if i["sk"] == "META" and i["chatId"] == chat_id
    )
    with pytest.raises(ChangeLost):
        commit(ledger, begun, "added", "u_carol", clock())
    assert ledger.chats.members.role_of(chat_id, "u_carol") is None


def test_a_slow_writer_removed_while_its_seq_was_voided_is_not_resequenced_after_the_removal(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given bob's send reserved seq 1 and stalled; meanwhile alice removed him (announcement at 2)
    # and his empty seq 1 was filled with a VOID
    chat_id = make_chat("u_alice", "u_bob", "u_carol")

    class RemovedWhileStalled(Proxy):
        def put_message(self, message: StoredMessage) -> None:
            if message.seq == 1:
                remove(ledger, caller("u_alice"), chat_id, ["u_bob"])
                self.real.fill_void(StoredVoid(chat_id=chat_id, seq=1, created_at=message.created_at))
            self.real.put_message(message)

    slow = dataclasses.replace(ledger, messages=RemovedWhileStalled(ledger.messages))
    # When his send goes on and finds its seq taken
    # Then it is FORBIDDEN instead of taking a seq after his removal
    with pytest.raises(Forbidden):
        send_message(slow, caller("u_bob"), send_frame(chat_id, "late"), POLICY)
    assert layout(aws_env, chat_id) == [(1, "VOID"), (2, "system")]
    assert head_of(ledger, chat_id) == 2
