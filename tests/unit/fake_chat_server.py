"""A tiny WebSocket server speaking PROTOCOL.md, for the SDK's tests (test_client_sdk.py).

It answers send (idempotent by clientMsgId, gapless seq), sync (with limit/more/heads),
createChat and heartbeat, and has hooks to misbehave: withhold ACKs, answer ERRORs, push frames
out of order or not at all.
"""

from __future__ import annotations

import asyncio
import base64
import json
from http import HTTPStatus
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

import jwt
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from chat_client import ChatClient, mint_token

SECRET = "local-dev-secret"  # the local stack's default HS256 secret, which mint_token signs with
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


def make_client(server: FakeChatServer, user: str, device: str = "d_1", **kwargs: Any) -> ChatClient:
    return ChatClient(server.url, mint_token(user, device), **{**FAST, **kwargs})


async def eventually(predicate: Any, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
