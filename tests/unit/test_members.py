"""addMembers / removeMembers / getMembers (logic/members.py + dal/chat_store.py) against moto."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore, SendContext
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.errors import BadRequest, ChatError, Forbidden, GroupFull
from chat_backend.logic import members as members_logic
from chat_backend.logic.fanout import fan_out
from chat_backend.logic.members import add_members, get_members, remove_members
from chat_backend.logic.send import send_message
from chat_backend.logic.sync import sync
from chat_backend.models import (
    AddMembersFrame,
    Caller,
    DeliveryEnvelope,
    GetMembersFrame,
    RemoveMembersFrame,
    SendFrame,
    SyncFrame,
)
from chat_backend.services import services
from tests.unit.conftest import LockedDdb

Frame = AddMembersFrame | RemoveMembersFrame


def change(action: str, chat_id: str, members: list[str]) -> Any:
    model = AddMembersFrame if action == "addMembers" else RemoveMembersFrame
    return model.model_validate({"action": action, "requestId": "r1", "chatId": chat_id, "members": members})


def send_frame(chat_id: str, text: str) -> SendFrame:
    return SendFrame.model_validate(
        {
            "action": "send",
            "clientMsgId": text,
            "chatId": chat_id,
            "ciphertext": base64.b64encode(text.encode()).decode(),
        }
    )


def member_ids(store: ChatStore, chat_id: str) -> set[str]:
    return {u for page in store.member_pages(chat_id) for u in page}


def announcements(aws_env: Any, chat_id: str) -> list[tuple[int, dict[str, Any]]]:
    return [
        (int(m["seq"]), json.loads(bytes(m["ciphertext"])))
        for m in aws_env.messages(chat_id)
        if m["sender"] == "system"
    ]


def test_admin_adds_members_and_the_change_is_a_system_message_at_the_next_seq(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given alice's group with bob, holding one message from bob
    chat_id = make_chat("u_alice", "u_bob")
    send_message(store, make_caller("u_bob"), send_frame(chat_id, "hi"), 3600)
    # When alice adds carol and dave (and bob again, who is already in)
    answer = add_members(
        store, make_caller("u_alice"), change("addMembers", chat_id, ["u_carol", "u_dave", "u_bob"])
    )
    # Then the group has four members, the answer says so
    assert (answer.chat_id, answer.member_count, answer.role, answer.request_id) == (
        chat_id,
        4,
        "admin",
        "r1",
    )
    assert member_ids(store, chat_id) == {"u_alice", "u_bob", "u_carol", "u_dave"}
    # And the change is message #2, from "system", naming only the new members and who added them
    assert announcements(aws_env, chat_id) == [
        (2, {"event": "added", "members": ["u_carol", "u_dave"], "by": "u_alice"})
    ]
    # And the new members see the chat and can send in it at the next seq
    ack = send_message(store, make_caller("u_carol"), send_frame(chat_id, "hello all"), 3600)
    assert ack.seq == 3


def test_a_non_admin_cannot_add_or_remove_others_and_nothing_changes(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given alice's group with bob and carol
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    before = aws_env.scan("chats"), aws_env.messages(chat_id)
    # When bob (a member, not an admin) tries to add dave, or to remove carol
    for action, users in (("addMembers", ["u_dave"]), ("removeMembers", ["u_carol"])):
        with pytest.raises(Forbidden, match="only admins"):
            (add_members if action == "addMembers" else remove_members)(
                store, make_caller("u_bob"), change(action, chat_id, users)
            )
    # Then nothing was written
    assert (aws_env.scan("chats"), aws_env.messages(chat_id)) == before


def test_a_stranger_cannot_change_or_list_members(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given alice's group, and mallory who is not in it
    chat_id = make_chat("u_alice", "u_bob")
    mallory = make_caller("u_mallory")
    # When mallory tries to add herself, remove bob, or list the members
    # Then each is FORBIDDEN, and the chat is unchanged
    with pytest.raises(Forbidden, match="not a member"):
        add_members(store, mallory, change("addMembers", chat_id, ["u_mallory"]))
    with pytest.raises(Forbidden, match="not a member"):
        remove_members(store, mallory, change("removeMembers", chat_id, ["u_bob"]))
    with pytest.raises(Forbidden, match="not a member"):
        get_members(
            store,
            mallory,
            GetMembersFrame.model_validate({"action": "getMembers", "requestId": "r", "chatId": chat_id}),
        )
    assert member_ids(store, chat_id) == {"u_alice", "u_bob"}
    assert aws_env.messages(chat_id) == []


def test_a_member_may_leave_and_then_cannot_send_or_sync_the_chat(
    aws_env: Any,
    store: ChatStore,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
    poster: Any,
) -> None:
    # Given alice's group with bob and carol
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    bob = make_caller("u_bob")
    # When bob removes himself
    answer = remove_members(store, bob, change("removeMembers", chat_id, ["u_bob"]))
    # Then he is out, the others stay, and the change is in the chat as a system message
    assert (answer.member_count, answer.role) == (2, "member")
    assert member_ids(store, chat_id) == {"u_alice", "u_carol"}
    assert announcements(aws_env, chat_id) == [(1, {"event": "removed", "members": ["u_bob"], "by": "u_bob"})]
    # And he can no longer send in it
    with pytest.raises(Forbidden):
        send_message(store, bob, send_frame(chat_id, "still here?"), 3600)
    # And his sync neither replays it nor lists it in heads
    done = sync(
        store,
        poster,
        bob,
        SyncFrame.model_validate({"action": "sync", "requestId": "s", "cursors": {chat_id: 0}}),
    )
    assert chat_id not in done.heads
    assert poster.frames() == []


def test_removing_needs_admin_except_for_oneself_and_direct_chats_never_change(
    store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given a direct chat of alice and bob
    direct = make_chat("u_alice", "u_bob", kind="direct")
    # When alice adds carol to it, or removes bob
    # Then both are BAD_REQUEST: a direct chat has exactly its pair
    with pytest.raises(BadRequest):
        add_members(store, make_caller("u_alice"), change("addMembers", direct, ["u_carol"]))
    with pytest.raises(BadRequest):
        remove_members(store, make_caller("u_alice"), change("removeMembers", direct, ["u_bob"]))
    assert member_ids(store, direct) == {"u_alice", "u_bob"}


def test_the_member_limit_is_enforced_with_group_full_and_nothing_written(
    monkeypatch: pytest.MonkeyPatch,
    aws_env: Any,
    store: ChatStore,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
) -> None:
    # Given a limit of 4 members (the real 10,000 is exercised over the local stack) and a group of 3
    monkeypatch.setattr(members_logic, "MAX_GROUP_MEMBERS", 4)
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    alice = make_caller("u_alice")
    # When alice adds two more
    # Then it is GROUP_FULL and nobody was added
    with pytest.raises(GroupFull):
        add_members(store, alice, change("addMembers", chat_id, ["u_dave", "u_erin"]))
    assert member_ids(store, chat_id) == {"u_alice", "u_bob", "u_carol"}
    assert aws_env.messages(chat_id) == []
    # And the 4th member fits, the 5th does not
    assert add_members(store, alice, change("addMembers", chat_id, ["u_dave"])).member_count == 4
    with pytest.raises(GroupFull):
        add_members(store, alice, change("addMembers", chat_id, ["u_erin"]))


def test_an_add_spanning_several_transactions_that_cannot_fit_is_refused_whole(
    monkeypatch: pytest.MonkeyPatch,
    aws_env: Any,
    store: ChatStore,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
) -> None:
    # Given a limit of 100 and a group of 3
    monkeypatch.setattr(members_logic, "MAX_GROUP_MEMBERS", 100)
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    newcomers = [f"u_new{i:03d}" for i in range(members_logic.MEMBERS_PER_ADD + 3)]
    # When alice adds more than one transaction holds, and more than the group has room for
    # Then it is GROUP_FULL before the first transaction: nobody was added, nothing announced
    with pytest.raises(GroupFull):
        add_members(store, make_caller("u_alice"), change("addMembers", chat_id, newcomers))
    assert member_ids(store, chat_id) == {"u_alice", "u_bob", "u_carol"}
    assert aws_env.messages(chat_id) == []


def test_concurrent_adds_never_exceed_the_limit_and_announcements_stay_gapless(
    monkeypatch: pytest.MonkeyPatch,
    aws_env: Any,
    store: ChatStore,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
) -> None:
    # Given a limit of 6 and a group of 2: room for 4 more
    monkeypatch.setattr(members_logic, "MAX_GROUP_MEMBERS", 6)
    chat_id = make_chat("u_alice", "u_bob")
    locked = ChatStore(store.chats_table, store.messages_table, ddb=LockedDdb(store.ddb))
    alice = make_caller("u_alice")
    outcomes: list[str] = []

    def add(user: str) -> None:
        try:
            add_members(locked, alice, change("addMembers", chat_id, [user]))
            outcomes.append("added")
        except ChatError as exc:
            outcomes.append(exc.code)

    # When 8 adds of different users race
    threads = [threading.Thread(target=add, args=(f"u_new{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then exactly 4 got in and 4 were told GROUP_FULL
    assert sorted(outcomes) == ["GROUP_FULL"] * 4 + ["added"] * 4, outcomes
    assert len(member_ids(store, chat_id)) == 6
    chat = store.get_chat(chat_id)
    assert chat is not None and chat.member_count == 6
    # And the four announcements hold seqs 1..4 with no gap
    assert [seq for seq, _ in announcements(aws_env, chat_id)] == [1, 2, 3, 4]


def test_a_send_racing_the_senders_removal_is_refused(
    aws_env: Any, store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given bob in alice's group, whose send reads the chat just before alice removes him
    chat_id = make_chat("u_alice", "u_bob")

    class RemovedAfterRead(ChatStore):
        def send_context(self, chat_id: str, user_id: str, client_msg_id: str) -> SendContext:
            context = super().send_context(chat_id, user_id, client_msg_id)
            if not getattr(self, "raced", False):
                self.raced = True
                remove_members(store, make_caller("u_alice"), change("removeMembers", chat_id, ["u_bob"]))
            return context

    racing = RemovedAfterRead(store.chats_table, store.messages_table, store.ddb)
    # When bob's send goes on with what it read
    # Then it is FORBIDDEN (the head moved with a new membership version, so it checked again)
    with pytest.raises(Forbidden):
        send_message(racing, make_caller("u_bob"), send_frame(chat_id, "sneaky"), 3600)
    assert [m["sender"] for m in aws_env.messages(chat_id)] == ["system"]


def test_get_members_pages_through_a_large_group(
    store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given a group of 1,201 members
    users = [f"u_{i:05d}" for i in range(1200)]
    chat_id = make_chat("u_alice", *users)
    # When bob pages through the members
    seen: list[tuple[str, str]] = []
    cursor: str | None = None
    pages = 0
    while True:
        frame = GetMembersFrame.model_validate(
            {"action": "getMembers", "requestId": f"r{pages}", "chatId": chat_id, "cursor": cursor}
        )
        page = get_members(store, make_caller(users[0]), frame)
        pages += 1
        seen += [(m.user_id, m.role) for m in page.members]
        cursor = page.next
        if cursor is None:
            break
    # Then he sees everyone exactly once, in pages of at most 500, with alice as the admin
    assert pages == 3
    assert len(seen) == len(set(seen)) == 1201
    assert dict(seen)["u_alice"] == "admin"
    assert {role for user, role in seen if user != "u_alice"} == {"member"}


def test_the_removal_announcement_reaches_the_removed_member_and_nothing_after_it(
    aws_env: Any,
    store: ChatStore,
    registry: ConnectionRegistry,
    queue: Any,
    io_pool: Executor,
    make_chat: Callable[..., str],
    make_caller: Callable[..., Caller],
) -> None:
    # Given alice's group with bob and carol, all online
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    for user in ("u_alice", "u_bob", "u_carol"):
        registry.register(user, "d1", f"conn-{user}", "t", 2**31)
    # When alice removes bob and then sends a message
    remove_members(store, make_caller("u_alice"), change("removeMembers", chat_id, ["u_bob"]))
    send_message(store, make_caller("u_alice", "d1"), send_frame(chat_id, "bob is gone"), 3600)
    stored = store.messages_after(chat_id, 0, 10)
    fan_out(store, registry, queue, stored, io_pool)
    # Then bob's connection gets the removal and not the message after it
    pushed: dict[int, set[str]] = {}
    for raw in aws_env.receive_all():
        envelope = DeliveryEnvelope.model_validate_json(raw["Body"])
        seq = json.loads(envelope.frame)["seq"]
        pushed.setdefault(seq, set()).update(r.connection_id for r in envelope.recipients)
    assert pushed == {
        1: {"conn-u_alice", "conn-u_bob", "conn-u_carol"},
        2: {"conn-u_carol"},
    }


def test_a_removed_member_no_longer_counts_in_receipts(
    store: ChatStore, make_chat: Callable[..., str], make_caller: Callable[..., Caller]
) -> None:
    # Given bob and carol, who both read alice's first message in her group
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    send_message(store, make_caller("u_alice"), send_frame(chat_id, "news"), 3600)
    receipts = services().receipts
    for user in ("u_bob", "u_carol"):
        receipts.advance(chat_id, user, "READ", 1, "2026-11-28T10:00:00.000Z")
    # When alice removes bob
    remove_members(store, make_caller("u_alice"), change("removeMembers", chat_id, ["u_bob"]))
    # Then only carol's watermark is left to count
    assert [w.user_id for w in receipts.watermarks(chat_id)] == ["u_carol"]
