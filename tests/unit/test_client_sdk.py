"""ChatClient against a tiny in-test server speaking PROTOCOL.md (fake_chat_server.py): sends
acknowledged, retried and re-sent across dropped connections, pushes released in seq order, gaps
filled by sync, errors and unexpected frames routed, receipts coalesced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import jwt
import pytest

from chat_client import Ack, ChatAuthError, ChatClient, ChatServerError, Message, mint_token
from chat_client.models import ChatClosedError
from tests.unit.fake_chat_server import FAST, SECRET, FakeChatServer, eventually, make_client

# The local stack's default HS256 secret is short by design (a dev secret).
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


@pytest.fixture
async def server() -> AsyncIterator[FakeChatServer]:
    async with FakeChatServer() as srv:
        yield srv


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
