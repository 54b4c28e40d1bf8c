"""A membership change in two steps (logic/membership_changes.py): `Sequencer.begin_change` reserves its seq
and marks it in flight, `MemberStore.commit_change` writes announcement + members + count at once.
What happens between the two: another change waits, a dead change is abandoned after the grace,
a change whose seq was VOIDed meanwhile (ChangeLost) decides again, nothing is ever half-written."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from chat_backend.dal.member_store import MemberStore
from chat_backend.errors import ChangeConflict, ChangeLost, RateLimited
from chat_backend.logic import holes
from chat_backend.logic import membership_changes as changes_logic
from chat_backend.logic.members import remove_members
from chat_backend.logic.membership_changes import announcement
from chat_backend.logic.send import Ledger
from chat_backend.models.records import ChatMeta, StoredMessage
from tests.unit.helpers import (
    GRACE_S,
    MakeChat,
    add_frame,
    adding,
    caller,
    member_ids,
    meta_item,
    remove_frame,
)


class Pauses:
    """Stands in for the changes' Backoff: notes each pause's attempt instead of sleeping, and runs
    `on_first` at the first pause."""

    def __init__(self, on_first: Callable[[], None] = lambda: None) -> None:
        self.attempts: list[int] = []
        self.on_first = on_first

    def pause(self, attempt: int, sleep: Any = None) -> None:
        self.attempts.append(attempt)
        if len(self.attempts) == 1:
            self.on_first()


def timeline(aws_env: Any, chat_id: str) -> list[tuple[int, str]]:
    """The chat's seqs: "VOID", or an announcement as "<by> <event> <members> (v<membership version>)"."""
    return [
        (int(m["seq"]), "VOID" if m.get("kind") == "VOID" else _announced(m))
        for m in aws_env.messages(chat_id)
    ]


def _announced(message: dict[str, Any]) -> str:
    body = json.loads(bytes(message["ciphertext"]))
    assert set(body) == {"event", "members", "by"}, body  # no promotion in these changes
    return f"{body['by']} {body['event']} {' '.join(body['members'])} (v{message['membersVersion']})"


def in_flight(meta: dict[str, Any]) -> bool:
    return bool({"changeToken", "changeSeq", "changeAt"} & set(meta))


class Settled(NamedTuple):
    """What the chat is left with: its members, and META's member count, head, membership version
    and whether a change is still in flight."""

    members: set[str]
    count: int
    head: int
    version: int
    in_flight: bool


def settled(aws_env: Any, ledger: Ledger, chat_id: str) -> Settled:
    meta = meta_item(aws_env, chat_id)
    return Settled(
        member_ids(ledger.chats, chat_id),
        int(meta["memberCount"]),
        int(meta["headSeq"]),
        int(meta["membersVersion"]),
        in_flight(meta),
    )


@dataclasses.dataclass
class OtherChange:
    """Another admin's change that reserved its seq and has not committed yet."""

    chat: ChatMeta
    token: str
    message: StoredMessage

    def commit(self, ledger: Ledger) -> None:
        ledger.chats.members.commit_change(self.chat, self.token, self.message, {"u_dave": "member"}, {})


def begin_other_change(ledger: Ledger, chat_id: str, at_ms: int) -> OtherChange:
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None
    seq = ledger.sequencer.begin_change(chat_id, chat.members_version, "other-token", at_ms)
    message = announcement(
        chat_id, seq, "added", ["u_dave"], "u_alice", chat.members_version + 1, time.time()
    )
    return OtherChange(chat, "other-token", message)


def with_members(ledger: Ledger, store_class: type[MemberStore]) -> Ledger:
    """The ledger whose chat store's member store is a `store_class` (staging a race) on the same
    tables."""
    members = ledger.chats.members
    staged = copy.copy(ledger.chats)
    staged.members = store_class(
        members.chats_table, members.messages_table, members.ddb, members.receipts_table
    )
    return dataclasses.replace(ledger, chats=staged)


def test_a_change_is_in_flight_between_its_seq_and_its_commit_which_writes_it_whole(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice's group with bob, and a look at the tables just before the change commits
    seen: list[tuple[dict[str, Any], list[Any], set[str]]] = []

    class Watched(MemberStore):
        def commit_change(self, chat: ChatMeta, token: str, *args: Any) -> None:
            seen.append(
                (meta_item(aws_env, chat_id), aws_env.messages(chat_id), member_ids(ledger.chats, chat_id))
            )
            super().commit_change(chat, token, *args)

    watched = with_members(ledger, Watched)
    # When alice adds carol
    adding(
        watched,
        caller("u_alice"),
        add_frame(chat_id, ["u_carol"]),
        GRACE_S,
    )
    # Then before the commit, seq 1 and version 1 were reserved and marked in flight, and nothing
    # else of the change was written
    [(meta, messages, members)] = seen
    assert (int(meta["headSeq"]), int(meta["membersVersion"]), int(meta["changeSeq"])) == (1, 1, 1)
    assert meta["changeToken"] and int(meta["memberCount"]) == 2
    assert (messages, members) == ([], {"u_alice", "u_bob"})
    # And after it, announcement, member and count are there, and the change is no longer in flight
    assert timeline(aws_env, chat_id) == [(1, "u_alice added u_carol (v1)")]
    assert settled(aws_env, ledger, chat_id) == Settled(
        {"u_alice", "u_bob", "u_carol"}, count=3, head=1, version=1, in_flight=False
    )


def test_a_change_meeting_another_in_flight_waits_for_it_and_lands_after_it(
    monkeypatch: pytest.MonkeyPatch, aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given another admin's add of dave that has its seq (1) and has not committed yet
    other = begin_other_change(ledger, chat_id, int(time.time() * 1000))
    # (the other change commits while we wait)
    pauses = Pauses(on_first=lambda: other.commit(ledger))
    monkeypatch.setattr(changes_logic, "RETRY", pauses)
    # When alice adds carol
    answer = adding(
        ledger,
        caller("u_alice"),
        add_frame(chat_id, ["u_carol"]),
        GRACE_S,
    )
    # Then her add waited for the other change, and landed after it at seq 2 / version 2
    assert pauses.attempts == [0]
    assert answer.member_count == 4
    assert timeline(aws_env, chat_id) == [(1, "u_alice added u_dave (v1)"), (2, "u_alice added u_carol (v2)")]
    assert settled(aws_env, ledger, chat_id) == Settled(
        {"u_alice", "u_bob", "u_carol", "u_dave"}, count=4, head=2, version=2, in_flight=False
    )


def test_a_change_meeting_a_young_change_that_never_commits_gives_up_having_written_nothing(
    monkeypatch: pytest.MonkeyPatch, aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given another admin's change in flight, younger than the grace, that never commits
    begin_other_change(ledger, chat_id, int(time.time() * 1000))
    before = meta_item(aws_env, chat_id)
    monkeypatch.setattr(changes_logic, "RETRY", Pauses())
    # When alice removes bob
    # Then she is told to try again (RATE_LIMITED, with a wait)
    with pytest.raises(RateLimited) as refused:
        remove_members(ledger, caller("u_alice"), remove_frame(chat_id, ["u_bob"]), 60.0)
    assert refused.value.retry_after_ms > 0
    # And bob is still in, no seq was spent, and the other change was left in flight (not abandoned)
    assert member_ids(ledger.chats, chat_id) == {"u_alice", "u_bob"}
    assert meta_item(aws_env, chat_id) == before
    assert aws_env.messages(chat_id) == []


def test_a_change_in_flight_older_than_the_grace_is_abandoned_and_its_seq_voided(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given another admin's add of dave that reserved seq 1 a minute ago and died
    dead = begin_other_change(ledger, chat_id, int((time.time() - 60) * 1000))
    # When alice adds carol (hole grace 5 s)
    answer = adding(
        ledger,
        caller("u_alice"),
        add_frame(chat_id, ["u_carol"]),
        GRACE_S,
    )
    # Then the dead change's seq holds a VOID and alice's add is announced after it
    assert answer.member_count == 3
    assert timeline(aws_env, chat_id) == [(1, "VOID"), (2, "u_alice added u_carol (v2)")]
    assert settled(aws_env, ledger, chat_id) == Settled(
        {"u_alice", "u_bob", "u_carol"}, count=3, head=2, version=2, in_flight=False
    )
    # And should the dead change's writer wake up, its commit is refused and writes nothing
    with pytest.raises(ChangeLost):
        dead.commit(ledger)
    assert "u_dave" not in member_ids(ledger.chats, chat_id)
    assert int(meta_item(aws_env, chat_id)["memberCount"]) == 3
    assert [seq for seq, _ in timeline(aws_env, chat_id)] == [1, 2]


def test_a_change_whose_seq_was_voided_before_it_committed_decides_again_at_a_later_seq(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice's group with bob, where alice's add of carol and dave stalls after reserving its
    # seq: meanwhile a sync fills that seq with a VOID, and another admin adds carol
    lost: list[str] = []

    class Stalling(MemberStore):
        def commit_change(self, chat: ChatMeta, token: str, message: StoredMessage, *args: Any) -> None:
            if not lost:
                lost.append(token)
                current = ledger.chats.get_chat(chat_id)
                assert current is not None and current.change is not None
                holes.fill_hole(
                    ledger.messages, ledger.sequencer, current, message.seq, int(time.time() * 1000)
                )
                adding(
                    ledger,
                    caller("u_alice"),
                    add_frame(chat_id, ["u_carol"]),
                    GRACE_S,
                )
            super().commit_change(chat, token, message, *args)

    stalling = with_members(ledger, Stalling)
    # When alice's add goes on (its commit meets ChangeLost)
    answer = adding(
        stalling,
        caller("u_alice"),
        add_frame(chat_id, ["u_carol", "u_dave"]),
        GRACE_S,
    )
    # Then it decided again on the membership it found: carol was in by then, so it adds dave alone,
    # at seq 3 / version 3; its lost seq 1 holds only the VOID
    assert lost
    # And every member is counted once, with nothing left in flight
    assert answer.member_count == 4
    assert timeline(aws_env, chat_id) == [
        (1, "VOID"),
        (2, "u_alice added u_carol (v2)"),
        (3, "u_alice added u_dave (v3)"),
    ]
    assert settled(aws_env, ledger, chat_id) == Settled(
        {"u_alice", "u_bob", "u_carol", "u_dave"}, count=4, head=3, version=3, in_flight=False
    )


def test_a_change_whose_transaction_keeps_conflicting_voids_its_seq_and_lands_at_the_next(
    monkeypatch: pytest.MonkeyPatch, aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given a removal whose first transaction meets other operations on its items every time it tries
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    monkeypatch.setattr(changes_logic, "RETRY", Pauses())
    tries: list[int] = []

    class Contended(MemberStore):
        def commit_change(self, chat: ChatMeta, token: str, message: StoredMessage, *args: Any) -> None:
            tries.append(message.seq)
            if message.seq == 1:
                raise ChangeConflict(chat.chat_id)
            super().commit_change(chat, token, message, *args)

    contended = with_members(ledger, Contended)
    # When alice removes bob
    answer = remove_members(contended, caller("u_alice"), remove_frame(chat_id, ["u_bob"]), GRACE_S)
    # Then after a bounded number of tries at seq 1 it gave that seq up (a VOID, so nothing can land
    # there later) and the removal was announced once, at seq 2
    assert tries == [1] * changes_logic.COMMIT_ATTEMPTS + [2]
    assert answer.member_count == 2
    assert timeline(aws_env, chat_id) == [(1, "VOID"), (2, "u_alice removed u_bob (v2)")]
    assert settled(aws_env, ledger, chat_id) == Settled(
        {"u_alice", "u_carol"}, count=2, head=2, version=2, in_flight=False
    )
