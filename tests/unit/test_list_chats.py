"""Users in many chats (PROTOCOL.md v1.1, "Chats and sync for users in many chats"): listChats
pages every chat, sync `only` replays the chats named, SYNC_DONE lists at most 1,000 heads.

Seeding thousands of chats in in-process moto takes minutes, so these tests shrink the page, the
heads limit and the frame budget (module constants) and check the mechanism at that scale; the
protocol's own values are checked as constants."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from chat_backend.dal.chat_store import ChatStore
from chat_backend.logic import chats as chats_logic
from chat_backend.logic import sync as sync_logic
from chat_backend.logic.send import Ledger
from chat_backend.logic.sync import sync
from chat_backend.models.client_frames import SyncFrame
from chat_backend.models.common import now_iso
from chat_backend.models.records import ChatMeta
from tests.unit.conftest import RecordingPoster
from tests.unit.helpers import GRACE_S, Route, caller, send

MAX_FRAME = 128 * 1024


def seed_chats(store: ChatStore, user: str, count: int, name: str | None = None) -> list[str]:
    """`count` groups of `user` (admin) and bob, made straight in the store; their ids, sorted."""
    ids = []
    for _ in range(count):
        chat_id = f"g_{uuid.uuid4().hex}"
        meta = ChatMeta(
            chat_id=chat_id, kind="group", name=name, head_seq=0, member_count=2, created_at=now_iso()
        )
        store.create_chat(meta, user, {user: "admin", "u_bob": "member"})
        ids.append(chat_id)
    return sorted(ids)


def list_all(route: Route, user: str) -> tuple[list[dict[str, Any]], list[int]]:
    """Every chat listChats gives `user`, page after page; and each page's frame size."""
    chats: list[dict[str, Any]] = []
    sizes: list[int] = []
    cursor = None
    while True:
        body = route("chats", {"action": "listChats", "requestId": "l", "cursor": cursor}, user_id=user)[
            "body"
        ]
        sizes.append(len(body.encode()))
        page = json.loads(body)
        assert page["type"] == "CHATS" and page["requestId"] == "l"
        chats += page["chats"]
        cursor = page["next"]
        if cursor is None:
            return chats, sizes


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 5 chats, heads for at most 10, CHATS frames of at most 2 KB."""
    monkeypatch.setattr(chats_logic, "CHATS_PAGE", 5)
    monkeypatch.setattr(chats_logic, "ANSWER_BUDGET_BYTES", 2 * 1024)
    monkeypatch.setattr(sync_logic, "MAX_SYNC_HEADS", 10)


def test_the_protocols_limits() -> None:
    assert (chats_logic.CHATS_PAGE, sync_logic.MAX_SYNC_HEADS) == (500, 1000)
    assert chats_logic.ANSWER_BUDGET_BYTES < MAX_FRAME


def test_list_chats_pages_every_chat_once_with_head_and_role(
    route: Route, store: ChatStore, ledger: Ledger, small: None
) -> None:
    # Given alice in 11 groups, one of which has two messages
    chat_ids = seed_chats(store, "u_alice", 11)
    send(ledger, "u_alice", chat_ids[7])
    send(ledger, "u_bob", chat_ids[7])
    # When she pages through listChats
    chats, sizes = list_all(route, "u_alice")
    # Then every chat comes exactly once, in pages of at most 5, with its head and her role
    assert [c["chatId"] for c in chats] == chat_ids
    assert len(sizes) == 3
    assert {c["chatId"]: c["head"] for c in chats}[chat_ids[7]] == 2
    assert {c["role"] for c in chats} == {"admin"} and {c["kind"] for c in chats} == {"group"}
    # And bob, a member of each, is listed them as a member
    assert {c["role"] for c in list_all(route, "u_bob")[0]} == {"member"}


def test_long_names_make_smaller_pages_never_a_frame_over_the_budget(
    route: Route, store: ChatStore, small: None
) -> None:
    # Given alice in 10 groups whose names are 128 characters of three UTF-8 bytes each (about
    # 500 bytes a chat: 5 would take a page past its 2 KB budget)
    chat_ids = seed_chats(store, "u_alice", 10, name="\N{HIRAGANA LETTER A}" * 128)
    # When she pages through listChats
    chats, sizes = list_all(route, "u_alice")
    # Then every frame stays within the budget, so it takes 3 pages (4, 4, 2), not 2 of 5, and
    # nothing is lost
    assert all(size <= 2 * 1024 for size in sizes) and len(sizes) == 3
    assert [c["chatId"] for c in chats] == chat_ids


def test_a_user_in_more_chats_than_heads_holds_gets_the_ones_it_names_and_is_told(
    store: ChatStore, ledger: Ledger, small: None
) -> None:
    # Given alice in 11 groups (heads hold 10), two of which have a message
    chat_ids = seed_chats(store, "u_alice", 11)
    for chat_id in chat_ids[:2]:
        send(ledger, "u_bob", chat_id)
    poster = RecordingPoster()
    # When she syncs naming one of them
    frame = SyncFrame.model_validate({"action": "sync", "requestId": "s", "cursors": {chat_ids[0]: 0}})
    done = sync(ledger, poster, caller("u_alice"), frame, GRACE_S)
    # Then SYNC_DONE lists that chat alone and says heads are truncated; only it is replayed
    assert (done.heads, done.heads_truncated) == ({chat_ids[0]: 1}, True)
    assert json.loads(done.to_json())["headsTruncated"] is True
    assert {f["chatId"] for f in poster.frames()} == {chat_ids[0]}


def test_only_replays_and_lists_the_chats_named(store: ChatStore, ledger: Ledger) -> None:
    # Given alice in three groups, each with a message
    chat_ids = seed_chats(store, "u_alice", 3)
    for chat_id in chat_ids:
        send(ledger, "u_bob", chat_id)
    poster = RecordingPoster()
    # When she syncs `only` the second
    body = {"action": "sync", "requestId": "s", "cursors": {chat_ids[1]: 0}, "only": True}
    done = sync(ledger, poster, caller("u_alice"), SyncFrame.model_validate(body), GRACE_S)
    # Then only it is replayed and listed, and the heads are not called truncated
    assert done.heads == {chat_ids[1]: 1} and not done.heads_truncated
    assert "headsTruncated" not in json.loads(done.to_json())
    assert [f["chatId"] for f in poster.frames()] == [chat_ids[1]]
