"""ChatClient, protocol v1.1 (client/chat_client/client.py): VOID seqs, PONG heads, leaving a chat,
and RATE_LIMITED `retryAfterMs`, against the fake server of test_client_sdk.py taught those frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from chat_client import ChatClient, ChatServerError
from tests.unit.test_client_sdk import FakeChatServer, eventually, make_client

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


class V11Server(FakeChatServer):
    """The fake server, plus: VOID items in a chat, membership announcements, PONG `heads` (every
    chat of the user at its head), `retryAfterMs` on RATE_LIMITED, and when each frame came in."""

    def __init__(self) -> None:
        super().__init__()
        self.pong_heads = True
        self.retry_after_ms: int | None = None
        self.create_chat_errors: list[str] = []  # answered, in turn, to createChat before it works
        self.heads_limit: int | None = None  # SYNC_DONE lists at most this many chats (v1.1)
        self.arrivals: list[tuple[float, dict[str, Any]]] = []

    def store_void(self, chat_id: str) -> dict[str, Any]:
        chat = self.messages[chat_id]
        void = {"type": "VOID", "chatId": chat_id, "seq": len(chat) + 1}
        chat.append(void)
        return void

    def store_removal(self, chat_id: str, removed: list[str], by: str) -> dict[str, Any]:
        frame = self._store_change(chat_id, "removed", removed, by)
        for user in removed:
            self.members[chat_id].remove(user)
        return frame

    def store_addition(self, chat_id: str, added: list[str], by: str) -> dict[str, Any]:
        frame = self._store_change(chat_id, "added", added, by)
        for user in added:
            self.members[chat_id].append(user)
            self.starts[(user, chat_id)] = frame["seq"]
        return frame

    def _store_change(self, chat_id: str, event: str, users: list[str], by: str) -> dict[str, Any]:
        frame = self.store(chat_id, "system", json.dumps({"event": event, "members": users, "by": by}))
        frame["fromDevice"] = None
        return frame

    async def _on_frame(self, ws: ServerConnection, user: str, device: str, frame: dict[str, Any]) -> None:
        self.arrivals.append((asyncio.get_running_loop().time(), frame))
        if frame.get("action") == "heartbeat" and self.pong_heads:
            heads = {c: len(self.messages[c]) for c, members in self.members.items() if user in members}
            await ws.send(json.dumps({"type": "PONG", "heads": heads}))
            return
        if frame.get("action") == "listChats":
            await self._on_list_chats(ws, user, frame)
            return
        if frame.get("action") == "sync" and (self.heads_limit is not None or frame.get("only")):
            await self._on_partial_sync(ws, user, frame)
            return
        if frame.get("action") == "createChat" and self.create_chat_errors:
            await self._error(ws, self.create_chat_errors.pop(0), "injected", frame)
            return
        await super()._on_frame(ws, user, device, frame)

    def chats_of(self, user: str) -> list[str]:
        return sorted(c for c, members in self.members.items() if user in members)

    async def _on_list_chats(self, ws: ServerConnection, user: str, frame: dict[str, Any]) -> None:
        """listChats in pages of 2."""
        chats = [c for c in self.chats_of(user) if frame.get("cursor") is None or c > frame["cursor"]]
        page = [
            {"chatId": c, "kind": "group", "name": None, "head": len(self.messages[c]), "role": "member"}
            for c in chats[:2]
        ]
        nxt = page[-1]["chatId"] if len(chats) > 2 else None
        await ws.send(
            json.dumps({"type": "CHATS", "requestId": frame["requestId"], "chats": page, "next": nxt})
        )

    async def _on_partial_sync(self, ws: ServerConnection, user: str, frame: dict[str, Any]) -> None:
        """A sync under `only`, or for a user in more chats than `heads_limit`: the chats named
        in cursors alone are replayed and listed."""
        cursors = frame.get("cursors") or {}
        truncated = self.heads_limit is not None and len(self.chats_of(user)) > self.heads_limit
        named = [c for c in self.chats_of(user) if c in cursors] if truncated or frame.get("only") else []
        heads = {}
        for chat_id in named:
            heads[chat_id] = len(self.messages[chat_id])
            for message in self.messages[chat_id][cursors.get(chat_id, 0) :]:
                await ws.send(json.dumps(message))
        done = {"type": "SYNC_DONE", "requestId": frame["requestId"], "heads": heads, "more": False}
        if truncated:
            done["headsTruncated"] = True
        await ws.send(json.dumps(done))

    async def _error(self, ws: ServerConnection, code: str, message: str, frame: dict[str, Any]) -> None:
        if code != "RATE_LIMITED" or self.retry_after_ms is None:
            await super()._error(ws, code, message, frame)
            return
        error = {
            "type": "ERROR",
            "code": code,
            "message": message,
            "requestId": frame.get("requestId"),
            "clientMsgId": frame.get("clientMsgId"),
            "retryAfterMs": self.retry_after_ms,
        }
        await ws.send(json.dumps(error))

    def sent_at(self, action: str) -> list[float]:
        return [t for t, f in self.arrivals if f.get("action") == action]


@pytest.fixture
async def server() -> AsyncIterator[V11Server]:
    async with V11Server() as srv:
        yield srv


# --- VOID ----------------------------------------------------------------------------------------


async def test_a_pushed_void_fills_its_seq_and_is_never_shown(server):
    # Given bob connected (gap syncs postponed, so only the VOID can fill the gap), and seq 1, a
    # VOID at seq 2 (its writer died) and seq 3 stored
    server.add_chat("c_1", ["alice", "bob"])
    async with make_client(server, "bob", gap_sync_delay=30) as bob:
        first = server.store("c_1", "alice", "m1")
        void = server.store_void("c_1")
        third = server.store("c_1", "alice", "m3")
        # When 1 and 3 are pushed, then the VOID of 2
        for frame in (first, third, void):
            await server.push_to("bob", "d_1", frame)
        # Then bob gets 1 and 3, in order, and nothing for 2
        got = [await bob.next_message(timeout=2) for _ in range(2)]
        assert [(m.seq, m.text) for m in got] == [(1, "m1"), (3, "m3")]
        await asyncio.sleep(0.05)
        assert bob.messages.empty() and bob.unmatched.empty()
        assert bob.cursors == {"c_1": 3}
        assert len(server.received("sync")) == 1  # only the connect-time sync


async def test_a_void_replayed_by_sync_is_skipped_too(server):
    # Given a chat holding message 1, a VOID at 2 and message 3
    server.add_chat("c_1", ["alice", "bob"])
    server.store("c_1", "alice", "m1")
    server.store_void("c_1")
    server.store("c_1", "alice", "m3")
    # When bob connects and syncs
    async with make_client(server, "bob") as bob:
        # Then he holds 1 and 3 and his cursor is past the VOID; the next DELIVERED names 3
        assert [bob.messages.get_nowait().seq for _ in range(bob.messages.qsize())] == [1, 3]
        assert bob.cursors == {"c_1": 3} and bob.unmatched.empty()
        await eventually(lambda: len(server.received("receipt")) == 1)
        assert server.received("receipt")[0]["upToSeq"] == 3


# --- PONG heads ----------------------------------------------------------------------------------


async def test_a_pong_with_a_head_past_the_cursor_makes_the_client_sync(server):
    # Given bob connected and up to date in c_1, heartbeating often, and pushes that get lost
    server.add_chat("c_1", ["alice", "bob"])
    server.push = False
    async with make_client(server, "bob", heartbeat_interval=0.05, gap_sync_delay=0.01) as bob:
        # When PONGs name c_1 at the head he already has, Then he does not sync
        await eventually(lambda: len(server.received("heartbeat")) >= 2)
        assert len(server.received("sync")) == 1
        # When alice's message is stored and its push is lost
        server.store("c_1", "alice", "lost push")
        # Then within a heartbeat the PONG names the new head, and bob syncs and gets the message
        got = await bob.next_message(timeout=2)
        assert (got.chat_id, got.seq, got.text) == ("c_1", 1, "lost push")
        assert len(server.received("sync")) == 2
        assert bob.cursors == {"c_1": 1} and bob.heads == {"c_1": 1}


# --- leaving a chat ------------------------------------------------------------------------------


@asynccontextmanager
async def bob_holding_message_1(server: V11Server, gap_sync_delay: float) -> AsyncIterator[ChatClient]:
    """bob connected, in c_1 with alice, holding its message 1 (alice's "m1")."""
    server.add_chat("c_1", ["alice", "bob"])
    server.store("c_1", "alice", "m1")
    async with make_client(server, "bob", gap_sync_delay=gap_sync_delay) as bob:
        assert (await bob.next_message(timeout=2)).seq == 1
        yield bob


def removed_after_message_2(server: V11Server) -> tuple[dict[str, Any], dict[str, Any]]:
    """alice's message 2 in c_1, then her removal of bob (seq 3), stored but not pushed."""
    return server.store("c_1", "alice", "m2"), server.store_removal("c_1", ["bob"], by="alice")


async def test_the_removal_of_this_user_drops_the_chat_at_its_announcement(server):
    # Given bob in c_1 holding message 1; then message 2, alice removing bob (seq 3), and messages
    # 4 and 5 stored; gap syncs wait 0.3 s
    async with bob_holding_message_1(server, gap_sync_delay=0.3) as bob:
        second, removal = removed_after_message_2(server)
        server.store("c_1", "alice", "m4")
        fifth = server.store("c_1", "alice", "m5")
        # When 5 (a push racing the removal, held behind the missing 4) and the removal arrive
        # before 2, and then 2
        for frame in (fifth, removal, second):
            await server.push_to("bob", "d_1", frame)
        # Then bob gets 2 and the removal announcement, in order
        got = [await bob.next_message(timeout=2) for _ in range(2)]
        assert [(m.seq, m.sender) for m in got] == [(2, "alice"), (3, "system")]
        # And the chat is dropped at the removal
        assert bob.left == {"c_1"} and "c_1" not in bob.heads and bob.cursors == {"c_1": 3}
        # And 5 is forgotten, and no sync tries to fill the gap before it, even when a stale PONG
        # names the chat's head
        await server.push_to("bob", "d_1", {"type": "PONG", "heads": {"c_1": 5}})
        await asyncio.sleep(0.6)
        assert bob.messages.empty()
        assert len(server.received("sync")) == 1


async def test_an_item_held_right_after_the_removal_is_not_shown(server):
    # Given bob in c_1 holding message 1; then message 2, alice removing bob (seq 3), message 4
    async with bob_holding_message_1(server, gap_sync_delay=30) as bob:
        second, removal = removed_after_message_2(server)
        fourth = server.store("c_1", "alice", "m4")
        # When 4 (a push racing the removal) and the removal are held before 2 arrives
        for frame in (fourth, removal, second):
            await server.push_to("bob", "d_1", frame)
        # Then bob gets 2 and the removal, and 4 is forgotten with the chat
        got = [await bob.next_message(timeout=2) for _ in range(2)]
        assert [m.seq for m in got] == [2, 3]
        await asyncio.sleep(0.05)
        assert bob.messages.empty() and bob.cursors == {"c_1": 3}


async def test_a_sync_no_longer_listing_a_chat_drops_what_it_held(server):
    # Given bob in c_1 and c_2, and three messages in c_1 whose pushes were lost
    server.add_chat("c_1", ["alice", "bob"])
    server.add_chat("c_2", ["alice", "bob"])
    async with make_client(server, "bob", gap_sync_delay=0.02) as bob:
        frames = [server.store("c_1", "alice", f"m{i}") for i in (1, 2, 3)]
        # When bob is removed from c_1 without seeing it, and then the push of 3 arrives
        server.members["c_1"].remove("bob")
        await server.push_to("bob", "d_1", frames[2])
        # Then the gap sync's SYNC_DONE does not list c_1: bob forgets c_1 and what it held
        await eventually(lambda: len(server.received("sync")) >= 2)
        await asyncio.sleep(0.3)
        assert bob.heads == {"c_2": 0}
        # And he stops syncing for it, and is never shown message 3
        assert len(server.received("sync")) == 2
        assert bob.messages.empty()


# --- RATE_LIMITED retryAfterMs -------------------------------------------------------------------


async def test_a_rate_limited_send_is_retried_after_the_time_the_server_gives(server):
    # Given a server that answers the first send RATE_LIMITED, retry after 300 ms (the client's
    # own backoff would wait at most 50 ms)
    server.add_chat("c_1", ["alice"])
    server.error_codes = ["RATE_LIMITED"]
    server.retry_after_ms = 300
    async with make_client(server, "alice") as alice:
        # When alice sends
        ack = await alice.send("c_1", b"x", client_msg_id="cm-w")
        # Then the same clientMsgId went again about 300 ms later, and was ACKed
        assert [f["clientMsgId"] for f in server.received("send")] == ["cm-w", "cm-w"]
        first, second = server.sent_at("send")
        assert 0.28 <= second - first < 1.0
        assert ack.seq == 1 and ack.client_msg_id == "cm-w"


async def test_a_rate_limited_request_is_sent_again_with_its_request_id_after_the_wait(server):
    # Given a server that answers the first createChat RATE_LIMITED, retry after 200 ms
    server.create_chat_errors = ["RATE_LIMITED"]
    server.retry_after_ms = 200
    async with make_client(server, "alice") as alice:
        # When alice creates a chat
        chat = await alice.create_chat("direct", ["bob"])
        # Then the same request (same requestId) went again about 200 ms later and got its CHAT
        first, second = server.received("createChat")
        assert first["requestId"] == second["requestId"] == chat["requestId"]
        times = server.sent_at("createChat")
        assert 0.18 <= times[1] - times[0] < 1.0
        assert chat["type"] == "CHAT"


async def test_a_request_refused_for_another_reason_is_not_retried(server):
    # Given a server that answers createChat FORBIDDEN
    server.create_chat_errors = ["FORBIDDEN"]
    async with make_client(server, "alice") as alice:
        # When alice creates a chat, Then FORBIDDEN is raised after one try
        with pytest.raises(ChatServerError) as err:
            await alice.create_chat("direct", ["bob"])
        assert err.value.code == "FORBIDDEN" and len(server.received("createChat")) == 1


async def test_a_send_gives_up_at_once_when_the_retry_would_come_after_its_deadline(server):
    # Given a server that answers RATE_LIMITED, retry after 5 s
    server.add_chat("c_1", ["alice"])
    server.error_codes = ["RATE_LIMITED"]
    server.retry_after_ms = 5000
    async with make_client(server, "alice") as alice:
        loop = asyncio.get_running_loop()
        start = loop.time()
        # When alice sends with a 1 s deadline, Then it raises RATE_LIMITED without waiting the 5 s
        with pytest.raises(ChatServerError) as err:
            await alice.send("c_1", b"x", client_msg_id="cm-d", deadline=1.0)
        assert err.value.code == "RATE_LIMITED" and err.value.frame["retryAfterMs"] == 5000
        assert loop.time() - start < 0.9
        assert len(server.received("send")) == 1


# --- users in many chats (v1.1) ------------------------------------------------------------------


async def test_a_user_in_more_chats_than_sync_done_lists_catches_up_through_list_chats(server):
    # Given alice in 5 chats with a message each, and a server whose SYNC_DONE lists at most 3
    for n in range(5):
        server.add_chat(f"c_{n}", ["alice", "bob"])
        server.store(f"c_{n}", "bob", f"hello {n}")
    server.heads_limit = 3
    # When alice connects with no cursors
    async with make_client(server, "alice") as alice:
        # Then she has every message of every chat, in order, and knows every head
        got = sorted([(await alice.next_message(3)).chat_id for _ in range(5)])
        assert got == [f"c_{n}" for n in range(5)]
        assert alice.heads == {f"c_{n}": 1 for n in range(5)}
        # And she learnt the heads by paging listChats, then synced `only` the chats behind
        assert len(server.received("listChats")) == 3
        assert any(f.get("only") for f in server.received("sync"))


# --- history windows -----------------------------------------------------------------------------


async def test_being_added_to_a_chat_starts_it_at_the_announcement_without_a_sync(server):
    # Given alice's chat c_1 with three messages, and bob connected (gap syncs postponed)
    server.add_chat("c_1", ["alice"])
    for text in ("m1", "m2", "m3"):
        server.store("c_1", "alice", text)
    async with make_client(server, "bob", gap_sync_delay=30) as bob:
        # When alice adds bob (seq 4), then sends 5, both pushed
        added = server.store_addition("c_1", ["bob"], by="alice")
        fifth = server.store("c_1", "alice", "m5")
        for frame in (added, fifth):
            await server.push_to("bob", "d_1", frame)
        # Then bob gets 4 and 5 at once: nothing before his addition is his to wait for
        got = [await bob.next_message(timeout=2) for _ in range(2)]
        assert [(m.seq, m.sender) for m in got] == [(4, "system"), (5, "alice")]
        assert bob.cursors == {"c_1": 5} and len(server.received("sync")) == 1


async def test_sync_done_starts_moves_the_cursor_to_the_window_and_releases_what_it_held(server):
    # Given bob's window in c_1 starts at seq 4 (alice's messages 4 and 5 are his to get)
    server.add_chat("c_1", ["alice", "bob"])
    for text in ("m1", "m2", "m3", "m4", "m5"):
        server.store("c_1", "alice", text)
    server.starts[("bob", "c_1")] = 4
    # When bob connects with nothing and syncs (gap syncs postponed)
    async with make_client(server, "bob", gap_sync_delay=30) as bob:
        # Then 4 and 5, replayed ahead of SYNC_DONE `starts`, are released once it says so
        got = [await bob.next_message(timeout=2) for _ in range(2)]
        assert [m.seq for m in got] == [4, 5]
        assert bob.cursors == {"c_1": 5} and len(server.received("sync")) == 1
