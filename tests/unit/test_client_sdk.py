"""ChatClient against a tiny in-test server speaking PROTOCOL.md.

The fake server answers send (idempotent by clientMsgId, gapless seq), sync (with limit/more/heads),
createChat and heartbeat, and has hooks to misbehave: withhold ACKs, answer ERRORs, push frames
out of order or not at all.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from chat_client import Ack, ChatAuthError, ChatClient, ChatServerError, Message, mint_token
from chat_client.models import ChatClosedError

# The local stack's default HS256 secret is short by design (a dev secret).
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

SECRET = "local-dev-secret"
FAST = {"reconnect_min": 0.01, "reconnect_max": 0.05, "ack_timeout": 2.0}


class FakeChatServer:
    def __init__(self) -> None:
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.members: dict[str, list[str]] = {}
        self.starts: dict[tuple[str, str], int] = {}  # (user, chat) -> where its history window starts
        self.acks: dict[tuple[str, str], dict[str, Any]] = {}
        self.frames: list[tuple[str, dict[str, Any]]] = []
        self.conns: dict[tuple[str, str], ServerConnection] = {}
        self.withhold_acks = 0
        self.error_codes: list[str] = []
        self.push = True
        self.refuse_receipts = False
        self.handshakes = 0
        self._identity: dict[ServerConnection, tuple[str, str]] = {}
        self._server: Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._auth)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- test helpers
    def add_chat(self, chat_id: str, members: list[str]) -> None:
        self.members[chat_id] = list(members)
        self.messages.setdefault(chat_id, [])

    def store(self, chat_id: str, sender: str, text: str, device: str = "d_x") -> dict[str, Any]:
        chat = self.messages[chat_id]
        frame = {
            "type": "MESSAGE",
            "chatId": chat_id,
            "serverMsgId": f"m_{chat_id}_{len(chat) + 1}",
            "seq": len(chat) + 1,
            "from": sender,
            "fromDevice": device,
            "ciphertext": base64.b64encode(text.encode()).decode(),
            "mediaIds": [],
            "createdAt": "2026-11-28T03:21:07.123Z",
        }
        chat.append(frame)
        return frame

    async def push_to(self, user: str, device: str, frame: dict[str, Any]) -> None:
        await self.conns[(user, device)].send(json.dumps(frame))

    def received(self, action: str) -> list[dict[str, Any]]:
        return [f for _, f in self.frames if f.get("action") == action]

    # -- protocol
    def _auth(self, connection: ServerConnection, request: Any) -> Any:
        query = parse_qs(urlparse(request.path).query)
        token = query.get("token", [""])[0]
        try:
            claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        except jwt.PyJWTError:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid token\n")
        # As the authorizer: the device claim, else the `device` parameter, else "default".
        device = claims.get("device", query.get("device", ["default"])[0])
        self._identity[connection] = (claims["sub"], device)
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        user, device = self._identity.pop(ws)
        self.handshakes += 1
        self.conns[(user, device)] = ws
        try:
            async for text in ws:
                try:
                    frame = json.loads(text)
                except ValueError:
                    await self._error(ws, "BAD_REQUEST", "malformed JSON", {})
                    continue
                self.frames.append((user, frame))
                await self._on_frame(ws, user, device, frame)
        except ConnectionClosed:
            pass
        finally:
            if self.conns.get((user, device)) is ws:
                del self.conns[(user, device)]

    async def _error(self, ws: ServerConnection, code: str, message: str, frame: dict[str, Any]) -> None:
        await ws.send(
            json.dumps(
                {
                    "type": "ERROR",
                    "code": code,
                    "message": message,
                    "requestId": frame.get("requestId"),
                    "clientMsgId": frame.get("clientMsgId"),
                }
            )
        )

    async def _on_frame(self, ws: ServerConnection, user: str, device: str, frame: dict[str, Any]) -> None:
        action = frame.get("action")
        if action == "heartbeat":
            await ws.send('{"type":"PONG"}')
        elif action == "createChat":
            chat_id = f"c_{len(self.members) + 1}"
            self.add_chat(chat_id, [user, *frame["members"]])
            await ws.send(
                json.dumps(
                    {
                        "type": "CHAT",
                        "requestId": frame["requestId"],
                        "chatId": chat_id,
                        "kind": frame["kind"],
                        "name": frame.get("name"),
                        "createdAt": "2026-11-28T03:21:07.123Z",
                        "memberCount": len(self.members[chat_id]),
                        "role": "admin",
                    }
                )
            )
        elif action == "send":
            await self._on_send(ws, user, device, frame)
        elif action == "sync":
            await self._on_sync(ws, user, frame)
        elif action == "receipt":
            if self.refuse_receipts:
                await self._error(ws, "FORBIDDEN", "not a member", frame)
        else:
            await self._error(ws, "BAD_REQUEST", f"unknown action {action!r}", frame)

    async def _on_send(self, ws: ServerConnection, user: str, device: str, frame: dict[str, Any]) -> None:
        if self.error_codes:
            await self._error(ws, self.error_codes.pop(0), "injected", frame)
            return
        chat_id = frame["chatId"]
        if user not in self.members.get(chat_id, []):
            await self._error(ws, "FORBIDDEN", f"not a member of {chat_id}", frame)
            return
        key = (user, frame["clientMsgId"])
        if key not in self.acks:
            stored = self.store(chat_id, user, "", device)
            stored["ciphertext"] = frame["ciphertext"]
            self.acks[key] = {
                "type": "ACK",
                "clientMsgId": frame["clientMsgId"],
                "chatId": chat_id,
                "serverMsgId": stored["serverMsgId"],
                "seq": stored["seq"],
                "createdAt": stored["createdAt"],
            }
            if self.push:
                for (member, dev), conn in list(self.conns.items()):
                    if member in self.members[chat_id] and (member, dev) != (user, device):
                        await conn.send(json.dumps(stored))
        if self.withhold_acks > 0:
            self.withhold_acks -= 1  # stored, but the ACK is "lost"
            return
        await ws.send(json.dumps(self.acks[key]))

    async def _on_sync(self, ws: ServerConnection, user: str, frame: dict[str, Any]) -> None:
        cursors, limit = frame.get("cursors") or {}, frame.get("limit") or 500
        sent, more = 0, False
        heads: dict[str, int] = {}
        starts = {c: s for (u, c), s in self.starts.items() if u == user}
        for chat_id, members in self.members.items():
            if user not in members:
                continue
            heads[chat_id] = len(self.messages[chat_id])
            cursor = max(cursors.get(chat_id, 0), starts.get(chat_id, 1) - 1)
            for message in self.messages[chat_id][cursor:]:
                if sent == limit:
                    more = True
                    break
                await ws.send(json.dumps(message))
                sent += 1
        done = {"type": "SYNC_DONE", "requestId": frame["requestId"], "heads": heads, "more": more}
        if starts:
            done["starts"] = starts
        await ws.send(json.dumps(done))


@pytest.fixture
async def server() -> AsyncIterator[FakeChatServer]:
    async with FakeChatServer() as srv:
        yield srv


def make_client(server: FakeChatServer, user: str, device: str = "d_1", **kwargs: Any) -> ChatClient:
    return ChatClient(server.url, mint_token(user, device), **{**FAST, **kwargs})


async def eventually(predicate: Any, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def test_send_is_acked_and_delivered_to_the_other_member(server):
    # Given alice and bob connected, and a direct chat alice created
    async with make_client(server, "alice") as alice, make_client(server, "bob") as bob:
        chat = await alice.create_chat("direct", ["bob"])
        assert chat["type"] == "CHAT" and chat["memberCount"] == 2
        # When alice sends
        ack = await alice.send(chat["chatId"], b"hello", client_msg_id="cm-1")
        # Then the ACK carries seq 1 and bob receives exactly that message
        assert ack == Ack("cm-1", chat["chatId"], ack.server_msg_id, 1, ack.created_at)
        got = await bob.next_message(timeout=2)
        assert isinstance(got, Message)
        assert (got.chat_id, got.seq, got.sender, got.sender_device, got.ciphertext) == (
            chat["chatId"],
            1,
            "alice",
            "d_1",
            b"hello",
        )
        assert got.server_msg_id == ack.server_msg_id
        # And alice's own message only advanced her cursor (it is not handed back to her)
        assert alice.cursors == {chat["chatId"]: 1} and alice.messages.empty()
        assert bob.cursors == {chat["chatId"]: 1}
        assert bob.connected.is_set() and alice.reconnects == 0


async def test_send_is_retried_after_a_dropped_connection_with_the_same_client_msg_id(server):
    # Given alice connected to a chat, and a server that will lose the next ACK
    server.add_chat("c_1", ["alice", "bob"])
    tokens_minted = []

    def token() -> str:
        tokens_minted.append(1)
        return mint_token("alice", "d_1")

    async with ChatClient(server.url, token, **FAST) as alice:
        server.withhold_acks = 1
        # When alice sends and the connection drops before any ACK arrives
        task = asyncio.create_task(alice.send("c_1", b"important"))
        await eventually(lambda: len(server.received("send")) == 1)
        await alice.drop_connection()
        assert not alice.connected.is_set()
        ack = await asyncio.wait_for(task, 3)
        # Then the client reconnected (fresh token), synced, re-sent the same frame and got the ACK
        assert alice.reconnects == 1 and alice.connected.is_set() and len(tokens_minted) == 2
        sends = server.received("send")
        assert len(sends) == 2 and sends[0] == sends[1]
        assert ack.client_msg_id == sends[0]["clientMsgId"] and ack.seq == 1
        # And the server stored it once, the re-send came after the reconnect's sync
        assert len(server.messages["c_1"]) == 1
        actions = [f["action"] for _, f in server.frames]
        assert actions == ["sync", "send", "sync", "send"]


async def test_send_is_resent_after_ack_timeout(server):
    # Given a server that loses the first ACK, and a short ack timeout
    server.add_chat("c_1", ["alice"])
    async with make_client(server, "alice", ack_timeout=0.1) as alice:
        server.withhold_acks = 1
        # When alice sends
        ack = await alice.send("c_1", b"x", client_msg_id="cm-t")
        # Then the same frame went twice, one message exists, and no reconnect was needed
        assert [f["clientMsgId"] for f in server.received("send")] == ["cm-t", "cm-t"]
        assert ack.seq == 1 and len(server.messages["c_1"]) == 1 and alice.reconnects == 0


async def test_retryable_errors_are_retried_and_others_raise(server):
    # Given a chat alice is a member of
    server.add_chat("c_1", ["alice"])
    async with make_client(server, "alice") as alice:
        # When the server answers RATE_LIMITED then INTERNAL before accepting
        server.error_codes = ["RATE_LIMITED", "INTERNAL"]
        ack = await alice.send("c_1", b"x", client_msg_id="cm-r")
        # Then the send succeeded with the same clientMsgId three times over
        assert ack.seq == 1
        assert [f["clientMsgId"] for f in server.received("send")] == ["cm-r"] * 3
        # When a send is refused for a non-retryable reason
        with pytest.raises(ChatServerError) as err:
            await alice.send("c_404", b"x", client_msg_id="cm-f")
        # Then it raises with the code, message and frame, and nothing is left in the error queue
        assert err.value.code == "FORBIDDEN" and "c_404" in err.value.message
        assert err.value.frame["clientMsgId"] == "cm-f"
        assert alice.errors.empty()


async def test_send_gives_up_at_the_deadline(server):
    # Given a server that never ACKs
    server.add_chat("c_1", ["alice"])
    async with make_client(server, "alice", ack_timeout=0.05) as alice:
        server.withhold_acks = 100
        # When alice sends with a deadline, Then it raises TimeoutError after re-sending
        with pytest.raises(TimeoutError):
            await alice.send("c_1", b"x", deadline=0.3)
        assert len(server.received("send")) >= 3


async def test_pushes_out_of_order_are_released_in_order(server):
    # Given bob connected (gap syncs postponed so only reordering can help) and three stored messages
    server.add_chat("c_1", ["alice", "bob"])
    async with make_client(server, "bob", gap_sync_delay=30) as bob:
        frames = [server.store("c_1", "alice", f"m{i}") for i in (1, 2, 3)]
        # When they are pushed as 3, 1, 3, 2, 1 (out of order, with duplicates)
        for i in (3, 1, 3, 2, 1):
            await server.push_to("bob", "d_1", frames[i - 1])
        # Then bob gets 1, 2, 3 exactly once, in order
        got = [await bob.next_message(timeout=2) for _ in range(3)]
        assert [(m.seq, m.text) for m in got] == [(1, "m1"), (2, "m2"), (3, "m3")]
        await asyncio.sleep(0.05)
        assert bob.messages.empty() and bob.cursors == {"c_1": 3}
        assert len(server.received("sync")) == 1  # only the connect-time sync


async def test_a_gap_triggers_a_sync_that_fills_it(server):
    # Given bob connected and three messages stored while their pushes got lost
    server.add_chat("c_1", ["alice", "bob"])
    async with make_client(server, "bob", gap_sync_delay=0.01) as bob:
        frames = [server.store("c_1", "alice", f"m{i}") for i in (1, 2, 3)]
        # When only the push of seq 3 arrives
        await server.push_to("bob", "d_1", frames[2])
        # Then bob syncs from cursor 0 and gets 1, 2, 3 in order, once each
        got = [await bob.next_message(timeout=2) for _ in range(3)]
        assert [m.seq for m in got] == [1, 2, 3]
        syncs = server.received("sync")
        assert len(syncs) == 2 and syncs[1]["cursors"] == {}
        assert bob.heads == {"c_1": 3} and bob.cursors == {"c_1": 3}
        await asyncio.sleep(0.05)
        assert bob.messages.empty()


async def test_connect_syncs_history_in_pages_from_saved_cursors(server):
    # Given a chat with 6 stored messages, of which the device already saw 1
    server.add_chat("c_1", ["alice", "bob"])
    for i in range(1, 7):
        server.store("c_1", "alice", f"m{i}")
    # When bob connects with a page size of 2
    async with make_client(server, "bob", sync_limit=2, cursors={"c_1": 1}) as bob:
        # Then connect returned after paging through 2..6, all released in order
        assert bob.messages.qsize() == 5
        assert [bob.messages.get_nowait().seq for _ in range(5)] == [2, 3, 4, 5, 6]
        assert [s["cursors"] for s in server.received("sync")] == [{"c_1": c} for c in (1, 3, 5)]
        assert [s["limit"] for s in server.received("sync")] == [2, 2, 2]
        assert bob.heads == {"c_1": 6}
        # And an explicit sync when nothing is new returns the heads in one round
        assert await bob.sync() == {"c_1": 6}
        assert server.received("sync")[-1]["cursors"] == {"c_1": 6}


async def test_requests_errors_and_unexpected_frames_are_routed(server):
    async with make_client(server, "alice") as alice:
        # Given a connected client
        # When a request names an unknown action, Then request() raises the ERROR it got back
        with pytest.raises(ChatServerError) as err:
            await alice.request({"action": "nope", "requestId": "r-1"})
        assert err.value.code == "BAD_REQUEST" and err.value.frame["requestId"] == "r-1"
        # When a malformed frame is sent raw, Then the unclaimed ERROR lands on `errors`
        await alice.send_raw("{not json")
        error = await asyncio.wait_for(alice.errors.get(), 2)
        assert error["code"] == "BAD_REQUEST"
        # When the server pushes a frame nobody waits for, Then it lands on `unmatched`
        await server.push_to("alice", "d_1", {"type": "TYPING", "chatId": "c_1", "userId": "bob"})
        await server.push_to("alice", "d_1", {"type": "PRESENCE", "userId": "bob", "status": "ONLINE"})
        assert (await alice.next_frame("PRESENCE", timeout=2))["status"] == "ONLINE"
        assert (await alice.next_frame(timeout=2))["type"] == "TYPING"


async def test_heartbeats_are_sent_and_pongs_consumed(server):
    # Given a short heartbeat interval
    async with make_client(server, "alice", heartbeat_interval=0.02) as alice:
        # When a few intervals pass
        await eventually(lambda: len(server.received("heartbeat")) >= 2)
        await asyncio.sleep(0.02)
        # Then PONGs went nowhere visible
        assert alice.unmatched.empty() and alice.errors.empty()


async def test_refused_handshake_raises_auth_error(server):
    # Given a token signed with the wrong secret
    client = ChatClient(server.url, mint_token("alice", "d_1", secret="wrong"), **FAST)
    # When connecting, Then ChatAuthError with the HTTP status, and no connection was made
    with pytest.raises(ChatAuthError) as err:
        await client.connect()
    assert err.value.status == 401 and server.handshakes == 0
    assert not client.connected.is_set()
    await client.close()


async def test_close_fails_pending_sends_and_stops_reconnecting(server):
    # Given a send waiting for an ACK that will never come
    server.add_chat("c_1", ["alice"])
    alice = make_client(server, "alice")
    await alice.connect()
    server.withhold_acks = 100
    task = asyncio.create_task(alice.send("c_1", b"x"))
    await eventually(lambda: len(server.received("send")) == 1)
    # When the client is closed
    await alice.close()
    # Then the send raises ChatClosedError, nothing reconnects, and further use is refused
    with pytest.raises(ChatClosedError):
        await task
    await asyncio.sleep(0.05)
    assert server.handshakes == 1 and not alice.connected.is_set()
    with pytest.raises(ChatClosedError):
        await alice.send("c_1", b"y")


async def test_many_sends_in_flight_survive_a_drop_and_a_receiver_sees_all_in_order(server):
    # Given alice and bob in a chat, and a server that loses the next 10 ACKs
    server.add_chat("c_1", ["alice", "bob"])
    async with make_client(server, "alice") as alice, make_client(server, "bob") as bob:
        server.withhold_acks = 10
        # When alice fires 40 sends concurrently and her connection drops midway
        tasks = [asyncio.create_task(alice.send("c_1", f"n{i}".encode())) for i in range(40)]
        await eventually(lambda: len(server.received("send")) >= 20)
        await alice.drop_connection()
        acks = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        # Then every send got exactly one stored message with a distinct seq
        assert sorted(a.seq for a in acks) == list(range(1, 41))
        assert len(server.messages["c_1"]) == 40
        # And bob received all 40 once, in seq order
        got = [await bob.next_message(timeout=2) for _ in range(40)]
        assert [m.seq for m in got] == list(range(1, 41))
        assert alice.reconnects == 1 and alice.cursors == {"c_1": 40}


# --- receipts ------------------------------------------------------------------------------------


async def test_released_messages_are_acknowledged_delivered_once_per_chat_coalesced(server):
    # Given five messages from alice in c_1 and one in c_2 waiting for bob, and bob's own in c_2
    server.add_chat("c_1", ["alice", "bob"])
    server.add_chat("c_2", ["alice", "bob"])
    for _ in range(5):
        server.store("c_1", "alice", "x")
    server.store("c_2", "alice", "y")
    server.store("c_2", "bob", "mine", device="d_other")
    async with make_client(server, "bob", delivered_delay=0.05) as bob:
        # When bob's client syncs and releases them all
        for _ in range(7):
            await bob.next_message(timeout=2)
        # Then it sends one DELIVERED watermark per chat, up to the last message from another
        # user, not one per message
        await eventually(lambda: len(server.received("receipt")) >= 2)
        await asyncio.sleep(0.2)
        frames = sorted(server.received("receipt"), key=lambda f: f["chatId"])
        assert [(f["chatId"], f["type"], f["upToSeq"]) for f in frames] == [
            ("c_1", "DELIVERED", 5),
            ("c_2", "DELIVERED", 1),
        ]
        # When alice's next message is pushed, Then one more watermark follows for it alone
        await server.push_to("bob", "d_1", server.store("c_1", "alice", "z"))
        await bob.next_message(timeout=2)
        await eventually(lambda: len(server.received("receipt")) == 3)
        assert server.received("receipt")[-1]["upToSeq"] == 6


async def test_mark_read_sends_a_read_watermark_and_delivered_can_be_turned_off(server):
    # Given bob with automatic DELIVERED off, and a message from alice already stored
    server.add_chat("c_1", ["alice", "bob"])
    server.store("c_1", "alice", "hi")
    async with make_client(server, "bob", auto_delivered=False, delivered_delay=0.01) as bob:
        await bob.next_message(timeout=2)
        await asyncio.sleep(0.1)
        # Then no receipt went out for it
        assert server.received("receipt") == []
        # When bob marks it read, Then one READ watermark goes out
        await bob.mark_read("c_1", 1)
        await eventually(lambda: len(server.received("receipt")) == 1)
        [frame] = server.received("receipt")
        assert (frame["chatId"], frame["type"], frame["upToSeq"]) == ("c_1", "READ", 1)


async def test_a_refused_automatic_receipt_does_not_surface_as_an_application_error(server):
    # Given a server that refuses receipts (as for a chat the user has just left)
    server.add_chat("c_1", ["alice", "bob"])
    server.store("c_1", "alice", "hi")
    server.refuse_receipts = True
    async with make_client(server, "bob", delivered_delay=0.01) as bob:
        # When bob's client acknowledges the message it synced
        await bob.next_message(timeout=2)
        await eventually(lambda: len(server.received("receipt")) == 1)
        await asyncio.sleep(0.1)
        # Then the ERROR it got is not put on `errors` (no call of the application caused it)
        assert bob.errors.empty()


async def test_a_token_without_a_device_claim_connects_as_the_device_given_to_the_client(server):
    # Given bob's token without a device claim (as Cognito issues them) and a client told its device
    now = int(time.time())
    token = jwt.encode({"sub": "bob", "iat": now, "exp": now + 600}, SECRET, algorithm="HS256")
    async with (
        make_client(server, "alice") as alice,
        ChatClient(server.url, token, device="d_tab", **FAST) as bob,
    ):
        chat = await alice.create_chat("direct", ["bob"])
        # When alice sends to bob
        await alice.send(chat["chatId"], b"hi")
        # Then the server knew the connection as bob's d_tab, and the client labels itself so
        assert (bob.user_id, bob.device_id) == ("bob", "d_tab")
        assert ("bob", "d_tab") in server.conns
        assert (await bob.next_message(timeout=2)).text == "hi"
