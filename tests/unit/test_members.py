"""addMembers / removeMembers / getMembers (logic/members.py + dal/member_store.py) against moto.

How a change is ordered against other changes and sends (in flight, abandoned, lost) is in
test_members_changes.py; the member limit, and adds too large for one transaction or racing each
other, in test_members_limit.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from chat_backend.dal.send_store import SendContext, SendStore
from chat_backend.errors import BadRequest, Forbidden
from chat_backend.logic import members as members_logic
from chat_backend.logic.members import get_members, remove_members
from chat_backend.logic.send import Ledger, send_message
from chat_backend.logic.sync import sync
from chat_backend.models.client_frames import GetMembersFrame, SyncFrame
from chat_backend.services import services
from tests.unit.helpers import (
    GRACE_S,
    POLICY,
    MakeChat,
    add_frame,
    adding,
    announcements,
    caller,
    member_ids,
    meta_item,
    remove_frame,
    send_frame,
)


def test_admin_adds_members_and_the_change_is_a_system_message_at_the_next_seq(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice's group with bob, holding one message from bob
    send_message(ledger, caller("u_bob"), send_frame(chat_id, "hi"), POLICY)
    # When alice adds carol and dave (and bob again, who is already in)
    answer = adding(ledger, caller("u_alice"), add_frame(chat_id, ["u_carol", "u_dave", "u_bob"]), GRACE_S)
    # Then the group has four members, and the answer says so
    assert (answer.chat_id, answer.member_count, answer.role, answer.request_id) == (
        chat_id,
        4,
        "admin",
        "r1",
    )
    assert member_ids(ledger.chats, chat_id) == {"u_alice", "u_bob", "u_carol", "u_dave"}
    # And the change is message #2, from "system", naming only the new members and who added them
    assert announcements(aws_env, chat_id) == [
        (2, {"event": "added", "members": ["u_carol", "u_dave"], "by": "u_alice"})
    ]
    # And the new members can send in it at the next seq
    assert send_message(ledger, caller("u_carol"), send_frame(chat_id, "hello"), POLICY).ack.seq == 3


def test_a_change_reserves_the_next_seq_with_a_new_membership_version_and_leaves_nothing_in_flight(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice's group with bob (membership version 0, head 0)
    # When alice adds carol, then removes bob
    alice = caller("u_alice")
    adding(ledger, alice, add_frame(chat_id, ["u_carol"]), GRACE_S)
    answer = remove_members(ledger, alice, remove_frame(chat_id, ["u_bob"]), GRACE_S)
    # Then each change took the next seq and the next membership version, stored on its announcement
    by_seq = {int(m["seq"]): m for m in aws_env.messages(chat_id)}
    assert {seq: int(m["membersVersion"]) for seq, m in by_seq.items()} == {1: 1, 2: 2}
    # And both are pushed by the fan-out (announcements go to the removed members too)
    assert {m["fanout"] for m in by_seq.values()} == {"queued"}
    # And META counts the members, stands at head 2 / version 2, with no change left in flight
    meta = meta_item(aws_env, chat_id)
    assert (int(meta["headSeq"]), int(meta["membersVersion"]), int(meta["memberCount"])) == (2, 2, 2)
    assert not {"changeToken", "changeSeq", "changeAt"} & set(meta)
    assert answer.member_count == 2


def test_a_non_admin_cannot_add_or_remove_others_and_nothing_changes(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given alice's group with bob and carol
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    before = aws_env.scan("chats"), aws_env.messages(chat_id)
    # When bob (a member, not an admin) tries to add dave, or to remove carol
    # Then both are FORBIDDEN and nothing was written (not even a seq reserved)
    with pytest.raises(Forbidden, match="only admins"):
        adding(ledger, caller("u_bob"), add_frame(chat_id, ["u_dave"]), GRACE_S)
    with pytest.raises(Forbidden, match="only admins"):
        remove_members(ledger, caller("u_bob"), remove_frame(chat_id, ["u_carol"]), GRACE_S)
    assert (aws_env.scan("chats"), aws_env.messages(chat_id)) == before


def test_a_stranger_cannot_change_or_list_members(aws_env: Any, ledger: Ledger, chat_id: str) -> None:
    # Given alice's group, and mallory who is not in it
    mallory = caller("u_mallory")
    before = aws_env.scan("chats")
    # When mallory tries to add herself, remove bob, or list the members
    # Then each is FORBIDDEN, and the chat is unchanged
    with pytest.raises(Forbidden, match="not a member"):
        adding(ledger, mallory, add_frame(chat_id, ["u_mallory"]), GRACE_S)
    with pytest.raises(Forbidden, match="not a member"):
        remove_members(ledger, mallory, remove_frame(chat_id, ["u_bob"]), GRACE_S)
    with pytest.raises(Forbidden, match="not a member"):
        get_members(
            ledger.chats,
            mallory,
            GetMembersFrame.model_validate({"action": "getMembers", "requestId": "r", "chatId": chat_id}),
        )
    assert aws_env.scan("chats") == before
    assert aws_env.messages(chat_id) == []


def test_a_member_may_leave_and_then_cannot_send_or_sync_the_chat(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat, poster: Any
) -> None:
    # Given alice's group with bob and carol
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    bob = caller("u_bob")
    # When bob removes himself
    answer = remove_members(ledger, bob, remove_frame(chat_id, ["u_bob"]), GRACE_S)
    # Then he is out, the others stay, and the change is in the chat as a system message
    assert (answer.member_count, answer.role) == (2, "member")
    assert member_ids(ledger.chats, chat_id) == {"u_alice", "u_carol"}
    assert announcements(aws_env, chat_id) == [(1, {"event": "removed", "members": ["u_bob"], "by": "u_bob"})]
    # And he can no longer send in it
    with pytest.raises(Forbidden):
        send_message(ledger, bob, send_frame(chat_id, "still here?"), POLICY)
    # And his sync replays his window through his removal, where the chat's head stays for him
    frame = SyncFrame.model_validate({"action": "sync", "requestId": "s", "cursors": {chat_id: 0}})
    done = sync(ledger, poster, bob, frame, GRACE_S)
    assert done.heads == {chat_id: 1}
    assert [f["seq"] for f in poster.frames()] == [1]
    # And a sync that does not name the chat does not list it
    fresh = SyncFrame.model_validate({"action": "sync", "requestId": "t", "cursors": {}})
    assert chat_id not in sync(ledger, poster, bob, fresh, GRACE_S).heads


def test_the_last_admin_leaving_promotes_the_longest_standing_member(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given alice's group made with carol and bob, then dave added later
    chat_id = make_chat("u_alice", "u_carol", "u_bob")
    adding(ledger, caller("u_alice"), add_frame(chat_id, ["u_dave"]))
    # When alice, its only admin, leaves
    remove_members(ledger, caller("u_alice"), remove_frame(chat_id, ["u_alice"]), GRACE_S)
    # Then bob (a founding member, first by id among those who joined with the chat) is admin, in
    # the same change, and the announcement says so
    roles = dict(ledger.chats.members.page(chat_id, None, 10)[0])
    assert roles == {"u_bob": "admin", "u_carol": "member", "u_dave": "member"}
    assert announcements(aws_env, chat_id)[-1][1] == {
        "event": "removed",
        "members": ["u_alice"],
        "by": "u_alice",
        "promoted": ["u_bob"],
    }
    # And he can now add members
    assert adding(ledger, caller("u_bob"), add_frame(chat_id, ["u_erin"])).member_count == 4


def test_an_admin_leaving_while_another_admin_stays_promotes_nobody(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given alice's group with bob and carol, in which carol is an admin too
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    ledger.chats.ddb.update_item(
        TableName=ledger.chats.chats_table,
        Key={"chatId": {"S": chat_id}, "sk": {"S": "MEMBER#u_carol"}},
        UpdateExpression="SET #r = :a",
        ExpressionAttributeNames={"#r": "role"},
        ExpressionAttributeValues={":a": {"S": "admin"}},
    )
    # When alice leaves
    remove_members(ledger, caller("u_alice"), remove_frame(chat_id, ["u_alice"]), GRACE_S)
    # Then nobody is promoted: carol is still the admin
    roles = dict(ledger.chats.members.page(chat_id, None, 10)[0])
    assert roles == {"u_bob": "member", "u_carol": "admin"}
    assert "promoted" not in announcements(aws_env, chat_id)[-1][1]


def test_a_direct_chats_members_never_change(aws_env: Any, ledger: Ledger, make_chat: MakeChat) -> None:
    # Given a direct chat of alice and bob
    direct = make_chat("u_alice", "u_bob", kind="direct")
    # When alice adds carol to it, or removes bob, or bob leaves it
    # Then each is BAD_REQUEST: a direct chat has exactly its pair
    with pytest.raises(BadRequest):
        adding(ledger, caller("u_alice"), add_frame(direct, ["u_carol"]), GRACE_S)
    with pytest.raises(BadRequest):
        remove_members(ledger, caller("u_alice"), remove_frame(direct, ["u_bob"]), GRACE_S)
    with pytest.raises(BadRequest):
        remove_members(ledger, caller("u_bob"), remove_frame(direct, ["u_bob"]), GRACE_S)
    assert member_ids(ledger.chats, direct) == {"u_alice", "u_bob"}
    assert aws_env.messages(direct) == []


def test_adding_members_already_in_or_removing_strangers_writes_nothing(
    aws_env: Any, ledger: Ledger, chat_id: str
) -> None:
    # Given alice's group with bob
    before = aws_env.scan("chats")
    # When alice adds bob again, and removes dave who was never in
    alice = caller("u_alice")
    added = adding(ledger, alice, add_frame(chat_id, ["u_bob"]), GRACE_S)
    removed = remove_members(ledger, alice, remove_frame(chat_id, ["u_dave"]), GRACE_S)
    # Then both answer the group as it is, and no seq, version or announcement was spent on them
    assert added.member_count == removed.member_count == 2
    assert aws_env.scan("chats") == before
    assert aws_env.messages(chat_id) == []


def test_a_send_racing_the_senders_removal_is_refused(aws_env: Any, ledger: Ledger, chat_id: str) -> None:
    # Given bob in alice's group, whose send reads the chat just before alice removes him

    class RemovedAfterRead(SendStore):
        raced = False

        def context(
            self, chat_id: str, user_id: str, client_msg_id: str, media_ids: list[str]
        ) -> SendContext:
            context = super().context(chat_id, user_id, client_msg_id, media_ids)
            if not self.raced:
                self.raced = True
                remove_members(ledger, caller("u_alice"), remove_frame(chat_id, ["u_bob"]), GRACE_S)
            return context

    racing = dataclasses.replace(ledger, sends=RemovedAfterRead(ledger.chats.chats_table))
    # When bob's send goes on with what it read
    # Then it is FORBIDDEN (its reservation was conditional on the membership it read), and only
    # the removal is in the chat
    with pytest.raises(Forbidden):
        send_message(racing, caller("u_bob"), send_frame(chat_id, "sneaky"), POLICY)
    assert [m["sender"] for m in aws_env.messages(chat_id)] == ["system"]
    assert int(meta_item(aws_env, chat_id)["headSeq"]) == 1


def test_get_members_pages_through_a_large_group(ledger: Ledger, make_chat: MakeChat) -> None:
    # Given a group of 1,201 members
    users = [f"u_{i:05d}" for i in range(1200)]
    chat_id = make_chat("u_alice", *users)
    # When a member pages through the members
    seen: list[tuple[str, str]] = []
    cursor: str | None = None
    pages = 0
    while True:
        frame = GetMembersFrame.model_validate(
            {"action": "getMembers", "requestId": f"r{pages}", "chatId": chat_id, "cursor": cursor}
        )
        page = get_members(ledger.chats, caller(users[0]), frame)
        pages += 1
        assert len(page.members) <= members_logic.MEMBERS_PAGE
        seen += [(m.user_id, m.role) for m in page.members]
        cursor = page.next
        if cursor is None:
            break
    # Then they see everyone exactly once, in pages of at most 500, with alice as the admin
    assert pages == 3
    assert len(seen) == len(set(seen)) == 1201
    assert dict(seen)["u_alice"] == "admin"
    assert {role for user, role in seen if user != "u_alice"} == {"member"}


def test_a_removed_member_no_longer_counts_in_receipts(ledger: Ledger, make_chat: MakeChat) -> None:
    # Given bob and carol, who both read alice's first message in her group
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    send_message(ledger, caller("u_alice"), send_frame(chat_id, "news"), POLICY)
    receipts = services().receipts
    for user in ("u_bob", "u_carol"):
        receipts.advance(chat_id, user, "READ", 1, "2026-11-28T10:00:00.000Z")
    # When alice removes bob
    remove_members(ledger, caller("u_alice"), remove_frame(chat_id, ["u_bob"]), GRACE_S)
    # Then only carol's watermark is left to count
    assert [w.user_id for w in receipts.watermarks(chat_id)] == ["u_carol"]
