"""createChat (logic/chats.py + dal/chat_store.py): direct chats unique per pair, groups capped."""

from __future__ import annotations

from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore
from chat_backend.errors import BadRequest, GroupFull
from chat_backend.models.client_frames import CreateChatFrame
from chat_backend.models.common import MAX_GROUP_MEMBERS
from tests.unit.helpers import caller, creating


def create_frame(
    kind: str, members: list[str], name: str | None = None, request_id: str = "r1"
) -> CreateChatFrame:
    data: dict[str, Any] = {"action": "createChat", "requestId": request_id, "kind": kind, "members": members}
    if name is not None:
        data["name"] = name
    return CreateChatFrame.model_validate(data)


def roles_in(aws_env: Any, chat_id: str) -> dict[str, str]:
    return {
        i["memberUserId"]: i["role"]
        for i in aws_env.scan("chats")
        if i["chatId"] == chat_id and i["sk"].startswith("MEMBER#")
    }


def test_direct_chat_is_unique_per_pair_from_either_side(aws_env: Any, store: ChatStore) -> None:
    # Given alice created a direct chat with bob
    first = creating(store, caller("u_alice"), create_frame("direct", ["u_bob"], request_id="r1"))
    # When bob creates a direct chat with alice, and alice creates hers again
    from_bob = creating(store, caller("u_bob"), create_frame("direct", ["u_alice"], request_id="r2"))
    again = creating(store, caller("u_alice"), create_frame("direct", ["u_bob"], request_id="r3"))
    # Then all three name the same chat, each answer echoes its own requestId,
    # alice is its admin and bob a member
    assert first.chat_id == from_bob.chat_id == again.chat_id
    assert [f.request_id for f in (first, from_bob, again)] == ["r1", "r2", "r3"]
    assert (first.role, from_bob.role, again.role) == ("admin", "member", "admin")
    assert {f.member_count for f in (first, from_bob, again)} == {2}
    assert {f.kind for f in (first, from_bob, again)} == {"direct"}
    assert from_bob.created_at == first.created_at
    # And the store holds one chat whose roles were not overwritten by the repeats
    metas = [i for i in aws_env.scan("chats") if i["sk"] == "META"]
    assert [m["chatId"] for m in metas] == [first.chat_id]
    assert roles_in(aws_env, first.chat_id) == {"u_alice": "admin", "u_bob": "member"}


def test_direct_chats_of_different_pairs_differ(store: ChatStore) -> None:
    # Given alice
    alice = caller("u_alice")
    # When she creates direct chats with bob and with carol
    with_bob = creating(store, alice, create_frame("direct", ["u_bob"]))
    with_carol = creating(store, alice, create_frame("direct", ["u_carol"]))
    # Then they are two chats
    assert with_bob.chat_id != with_carol.chat_id


def test_direct_chat_has_no_name_even_if_one_is_sent(store: ChatStore) -> None:
    # Given a direct createChat carrying a name
    frame = create_frame("direct", ["u_bob"], name="ignored")
    # When alice creates it
    chat = creating(store, caller("u_alice"), frame)
    # Then the chat has no name, as the protocol shows for direct chats
    assert chat.name is None


def test_direct_chat_with_self_is_bad_request(aws_env: Any, store: ChatStore) -> None:
    # Given alice
    # When she creates a direct chat whose other member is herself
    # Then BAD_REQUEST, and nothing is stored
    with pytest.raises(BadRequest) as err:
        creating(store, caller("u_alice"), create_frame("direct", ["u_alice"]))
    assert err.value.code == "BAD_REQUEST"
    assert aws_env.scan("chats") == []


def test_group_member_count_is_others_plus_creator(aws_env: Any, store: ChatStore) -> None:
    # Given alice and three others
    others = ["u_bob", "u_carol", "u_dave"]
    # When she creates a group with them
    chat = creating(store, caller("u_alice"), create_frame("group", others, name="team"))
    # Then the group has 4 members, she is admin, the others members, and each sees it among their chats
    assert (chat.kind, chat.name, chat.member_count, chat.role) == ("group", "team", 4, "admin")
    assert roles_in(aws_env, chat.chat_id) == {
        "u_alice": "admin",
        "u_bob": "member",
        "u_carol": "member",
        "u_dave": "member",
    }
    for user in ["u_alice", *others]:
        assert store.listing.chat_ids(user) == [chat.chat_id]
    views = store.heads.views("u_alice", [chat.chat_id])
    assert {chat_id: view.head for chat_id, view in views.items()} == {chat.chat_id: 0}


def test_groups_with_the_same_members_are_distinct_chats(store: ChatStore) -> None:
    # Given alice
    alice = caller("u_alice")
    # When she creates two groups with the same member
    one = creating(store, alice, create_frame("group", ["u_bob"]))
    two = creating(store, alice, create_frame("group", ["u_bob"]))
    # Then they are two chats, each with her as admin
    assert one.chat_id != two.chat_id
    assert (one.role, two.role) == ("admin", "admin")


def test_large_group_stores_every_member(store: ChatStore) -> None:
    # Given 150 others (more than one transaction holds)
    others = [f"u_{n:04d}" for n in range(150)]
    # When alice creates a group with them
    chat = creating(store, caller("u_alice"), create_frame("group", others))
    # Then the member count is 151 and every member is listed, page by page
    assert chat.member_count == 151
    pages = list(store.members.pages(chat.chat_id, page_size=64))
    assert sorted(u for page in pages for u in page) == sorted(["u_alice", *others])
    assert len(pages) == 3


def test_group_of_10000_others_is_group_full(aws_env: Any, store: ChatStore) -> None:
    # Given 10,000 others: with the creator that is one over the 10,000-member cap
    others = [f"u_{n:05d}" for n in range(MAX_GROUP_MEMBERS)]
    # When alice creates the group
    # Then GROUP_FULL, and nothing is stored
    with pytest.raises(GroupFull) as err:
        creating(store, caller("u_alice"), create_frame("group", others))
    assert err.value.code == "GROUP_FULL"
    assert aws_env.scan("chats") == []
