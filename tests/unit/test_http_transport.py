"""The SDK's HTTP fallback link (chat_client/http_transport.py) against a fake HTTP API: answers'
frames go to the client's dispatch in order, HTTP statuses become the frames or errors a WebSocket
client would have met."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from chat_client.http_transport import HttpLink, LinkClosed, http_twin


@pytest.mark.parametrize(
    ("ws_url", "http_url"),
    [
        ("ws://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
        ("wss://x.example/prod?token=t", "https://x.example/prod"),
    ],
)
def test_http_twin_of_a_websocket_url(ws_url: str, http_url: str) -> None:
    # Given a WebSocket URL / When its twin is taken / Then same host and path, http(s), no query
    assert http_twin(ws_url) == http_url


@pytest.fixture
async def api() -> AsyncIterator[tuple[TestServer, list[dict[str, Any]]]]:
    """A fake HTTP API: /v1/<status> answers that status; /v1/send and /v1/sync answer frames."""
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        action = request.match_info["action"]
        seen.append({"action": action, "auth": request.headers.get("Authorization"), **await request.json()})
        if action == "send":
            return web.json_response({"frames": [{"type": "ACK", "clientMsgId": "cm-1", "seq": 1}]})
        if action == "sync":
            frames = [{"type": "MESSAGE", "seq": 1}, {"type": "SYNC_DONE", "requestId": "r1"}]
            return web.json_response({"frames": frames})
        status = int(action.removeprefix("status"))
        return web.json_response({"message": "no"}, status=status, headers={"Retry-After": "2"})

    app = web.Application()
    app.add_routes([web.post("/v1/{action}", handle)])
    server = TestServer(app)
    await server.start_server()
    yield server, seen
    await server.close()


def link_to(server: TestServer, dispatched: list[dict[str, Any]]) -> HttpLink:
    async def nothing() -> None: ...

    async def never() -> bool:
        return False

    return HttpLink(
        str(server.make_url("/")),
        lambda: "tok",
        "laptop",
        lambda text: dispatched.append(json.loads(text)),
        poll=nothing,
        probe=never,
    )


async def test_answer_frames_are_dispatched_in_order_with_the_bearer_token(api: Any) -> None:
    # Given a link to the HTTP API
    server, seen = api
    dispatched: list[dict[str, Any]] = []
    link = link_to(server, dispatched)
    # When a sync frame is sent
    await link.send('{"action":"sync","requestId":"r1"}')
    # Then it was POSTed to /v1/sync with the bearer token, and its frames dispatched in order
    assert seen == [{"action": "sync", "auth": "Bearer tok", "requestId": "r1"}]
    assert [f["type"] for f in dispatched] == ["MESSAGE", "SYNC_DONE"]
    assert link.delivered == 1
    await link.close()


async def test_live_connection_frames_are_not_sent(api: Any) -> None:
    # Given a link / When heartbeat, typing and presence frames are sent
    server, seen = api
    link = link_to(server, [])
    for action in ("heartbeat", "typing", "presence"):
        await link.send(json.dumps({"action": action}))
    # Then none went over HTTP
    assert seen == []
    await link.close()


@pytest.mark.parametrize(
    ("status", "code"), [(429, "RATE_LIMITED"), (413, "TOO_LARGE"), (404, "BAD_REQUEST"), (502, "INTERNAL")]
)
async def test_refusals_become_the_error_frames_a_websocket_client_would_get(
    api: Any, status: int, code: str
) -> None:
    # Given a link / When a request is answered with an HTTP error status
    server, _ = api
    dispatched: list[dict[str, Any]] = []
    link = link_to(server, dispatched)
    await link.send(json.dumps({"action": f"status{status}", "requestId": "r7"}))
    # Then the client is handed an ERROR with the protocol's code, echoing the requestId
    [error] = dispatched
    assert (error["type"], error["code"], error["requestId"]) == ("ERROR", code, "r7")
    # And a throttled request is told when to retry (Retry-After)
    assert error.get("retryAfterMs") == (2000 if status == 429 else None)
    await link.close()


async def test_a_refused_token_closes_the_link_with_an_auth_error(api: Any) -> None:
    # Given a link / When the HTTP API answers 401
    server, _ = api
    link = link_to(server, [])
    with pytest.raises(LinkClosed):
        await link.send('{"action":"status401","requestId":"r1"}')
    # Then the link is closed and remembers the refusal for the client to raise
    assert link.closed
    assert link.auth_error is not None and link.auth_error.status == 401
