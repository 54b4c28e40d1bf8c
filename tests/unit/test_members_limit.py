"""The group member limit and large or concurrent adds (logic/members.py,
logic/membership_changes.py) against moto: an add that would pass the limit is GROUP_FULL with
nothing written, a large add lands as consecutive announcements, and racing adds and changes
never pass the limit nor leave a gap in seqs or versions."""

from __future__ import annotations

from typing import Any

import pytest

from chat_backend.errors import ChatError, GroupFull, RateLimited
from chat_backend.logic import members as members_logic
from chat_backend.logic import membership_changes as changes_logic
from chat_backend.logic.send import Ledger
from chat_backend.models.common import MAX_GROUP_MEMBERS, now_iso
from chat_backend.models.records import ChatMeta
from tests.unit.helpers import (
    GRACE_S,
    LockedDdb,
    MakeChat,
    add_frame,
    adding,
    announcements,
    caller,
    ledger_on,
    member_ids,
    meta_item,
    run_threads,
)


def limit_groups_to(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """The member limit as an add checks it: whole, before its first change (members.py), and at
    each change (membership_changes.py)."""
    monkeypatch.setattr(members_logic, "MAX_GROUP_MEMBERS", size)
    monkeypatch.setattr(changes_logic, "MAX_GROUP_MEMBERS", size)


def test_the_member_limit_is_enforced_with_group_full_and_nothing_written(
    monkeypatch: pytest.MonkeyPatch, aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given a limit of 4 members (the real limit is used in the race below) and a group of 3
    limit_groups_to(monkeypatch, 4)
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    alice = caller("u_alice")
    # When alice adds two more
    # Then it is GROUP_FULL and nobody was added
    with pytest.raises(GroupFull):
        adding(ledger, alice, add_frame(chat_id, ["u_dave", "u_erin"]), GRACE_S)
    assert member_ids(ledger.chats, chat_id) == {"u_alice", "u_bob", "u_carol"}
    assert aws_env.messages(chat_id) == []
    assert int(meta_item(aws_env, chat_id)["headSeq"]) == 0
    # And the 4th member fits, the 5th does not
    assert adding(ledger, alice, add_frame(chat_id, ["u_dave"]), GRACE_S).member_count == 4
    with pytest.raises(GroupFull):
        adding(ledger, alice, add_frame(chat_id, ["u_erin"]), GRACE_S)


def test_an_add_spanning_several_transactions_that_cannot_fit_is_refused_whole(
    monkeypatch: pytest.MonkeyPatch, aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given a limit of 100 and a group of 3
    limit_groups_to(monkeypatch, 100)
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    newcomers = [f"u_new{i:03d}" for i in range(changes_logic.MEMBERS_PER_ADD + 3)]
    # When alice adds more than one transaction holds, and more than the group has room for
    # Then it is GROUP_FULL before the first transaction: nobody was added, nothing announced
    with pytest.raises(GroupFull):
        adding(ledger, caller("u_alice"), add_frame(chat_id, newcomers), GRACE_S)
    assert member_ids(ledger.chats, chat_id) == {"u_alice", "u_bob", "u_carol"}
    assert aws_env.messages(chat_id) == []


def test_a_large_add_lands_as_consecutive_announcements_in_seq_order(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice's group with bob
    newcomers = [f"u_new{i:03d}" for i in range(200)]
    # When alice adds 200 members at once (more than one transaction holds)
    answer = adding(ledger, caller("u_alice"), add_frame(chat_id, newcomers), GRACE_S)
    # Then they land as announcements at seqs 1, 2, 3, each a new membership version, in the order asked
    found = announcements(aws_env, chat_id)
    assert [seq for seq, _ in found] == [1, 2, 3]
    assert [int(m["membersVersion"]) for m in aws_env.messages(chat_id)] == [1, 2, 3]
    assert [u for _, body in found for u in body["members"]] == newcomers
    # And everyone is in, counted once
    assert answer.member_count == 202
    assert len(member_ids(ledger.chats, chat_id)) == 202
    assert int(meta_item(aws_env, chat_id)["memberCount"]) == 202


def test_concurrent_adds_that_would_pass_10000_together_never_exceed_it(aws_env: Any, ledger: Ledger) -> None:
    # Given a group counting 9,990 members (alice and bob stored; the count is what the limit checks)
    chat_id = "c_nearly_full"
    meta = ChatMeta(
        chat_id=chat_id, kind="group", name=None, head_seq=0, member_count=9990, created_at=now_iso()
    )
    ledger.chats.create_chat(meta, "u_alice", {"u_alice": "admin", "u_bob": "member"})
    racing = ledger_on(LockedDdb(ledger.chats.ddb))
    alice = caller("u_alice")
    outcomes: list[str] = []

    def add(batch: int) -> None:
        frame = add_frame(chat_id, [f"u_b{batch}_{i}" for i in range(4)])
        for _ in range(20):  # a busy chat answers RATE_LIMITED: the client tries again
            try:
                adding(racing, alice, frame, GRACE_S)
                outcomes.append("added")
                return
            except RateLimited:
                continue
            except ChatError as exc:
                outcomes.append(exc.code)
                return

    # When six adds of four new members each race (room for ten)
    run_threads(add, [(n,) for n in range(6)])
    # Then two got in whole and four were told GROUP_FULL, with none of theirs added
    assert sorted(outcomes) == ["GROUP_FULL"] * 4 + ["added"] * 2, outcomes
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None and chat.member_count == 9998 <= MAX_GROUP_MEMBERS
    assert len(member_ids(ledger.chats, chat_id)) == 2 + 8
    # And the two announcements hold seqs 1 and 2, versions 1 and 2, with no gap
    assert [(int(m["seq"]), int(m["membersVersion"])) for m in aws_env.messages(chat_id)] == [(1, 1), (2, 2)]


def test_concurrent_changes_announce_in_seq_order_with_rising_versions(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice's group with bob
    racing = ledger_on(LockedDdb(ledger.chats.ddb))
    alice = caller("u_alice")
    errors: list[Exception] = []

    def add(user: str) -> None:
        for _ in range(20):
            try:
                adding(racing, alice, add_frame(chat_id, [user]), GRACE_S)
                return
            except RateLimited:
                continue
            except Exception as exc:
                errors.append(exc)
                return

    # When eight adds race
    run_threads(add, [(f"u_new{i}",) for i in range(8)])
    # Then all got in, each announced once, at seqs 1..8 whose versions rise with the seq
    assert errors == []
    stored = aws_env.messages(chat_id)
    assert [(int(m["seq"]), int(m["membersVersion"])) for m in stored] == [(n, n) for n in range(1, 9)]
    assert sorted(u for _, body in announcements(aws_env, chat_id) for u in body["members"]) == [
        f"u_new{i}" for i in range(8)
    ]
    assert int(meta_item(aws_env, chat_id)["memberCount"]) == 10
