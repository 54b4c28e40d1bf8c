"""API Gateway's WebSocket size rules, on the local gateway's connections.

API Gateway carries a client message of at most 128 KiB in frames of at most 32 KiB each; either
limit exceeded closes the connection with 1009 (PROTOCOL.md v1.1, "Frames on the wire"). aiohttp
has no per-frame limit, and when its own message limit trips it drops the transport with the
client's bytes unread (a TCP reset that can destroy the close frame before the client reads it).
So `FrameFilter` reads each frame's header off the byte stream before aiohttp's parser sees it:
frames within the limits pass unchanged; an offending frame and the rest of its message are kept
from the parser, and the socket closes with 1009 through the normal closing handshake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, web

MAX_MESSAGE_BYTES = 128 * 1024  # a whole (possibly fragmented) message, either way
MAX_CLIENT_FRAME_BYTES = 32 * 1024  # one WebSocket frame from a client


class FrameFilter:
    """Follows RFC 6455 frame boundaries in a byte stream fed in arbitrary chunks. Passes every
    frame on, except a data frame over `max_payload`, or one taking its message over `max_message`,
    and every data frame after it (the connection is closing); control frames always pass, so the
    client's close frame still reaches the parser."""

    def __init__(self, max_payload: int, max_message: int = MAX_MESSAGE_BYTES) -> None:
        self.max_payload = max_payload
        self.max_message = max_message
        self.violated = False
        self._head = bytearray()  # a header not yet complete: held back until its frame is judged
        self._payload_left = 0
        self._passing = True  # whether the current frame's payload goes on
        self._message_bytes = 0  # data payload so far of the message being received

    def feed(self, data: bytes) -> tuple[bytes, str | None]:
        """The bytes to pass on, and what is wrong when a frame was just found over a limit."""
        out = bytearray()
        problem = None
        pos = 0
        while pos < len(data):
            if self._payload_left:
                step = min(self._payload_left, len(data) - pos)
                if self._passing:
                    out += data[pos : pos + step]
                self._payload_left -= step
                pos += step
                continue
            need = _header_bytes(self._head) - len(self._head)
            taken = data[pos : pos + need]
            self._head += taken
            pos += len(taken)
            if len(self._head) < _header_bytes(self._head):
                continue  # the header's length field was just read, or the chunk ended mid-header
            found = self._judge(bytes(self._head))
            problem = problem or found
            if self._passing:
                out += self._head
            self._payload_left = _payload_bytes(self._head)
            self._head.clear()
        return bytes(out), problem

    def _judge(self, head: bytes) -> str | None:
        payload, fin, opcode = _payload_bytes(head), bool(head[0] & 0x80), head[0] & 0x0F
        self._passing = True
        if opcode >= 8:  # control frames stand apart from messages
            return None
        if self.violated:
            self._passing = False
            return None
        self._message_bytes += payload
        if payload > self.max_payload:
            problem = f"a frame of {payload} bytes; at most {self.max_payload}"
        elif self._message_bytes > self.max_message:
            problem = f"a message of over {self.max_message} bytes"
        else:
            if fin:
                self._message_bytes = 0
            return None
        self.violated, self._passing = True, False
        return problem


def _header_bytes(head: bytes | bytearray) -> int:
    """The header's full length as far as the bytes so far tell (2 until the length byte is in)."""
    if len(head) < 2:
        return 2
    len7 = head[1] & 0x7F
    extended = 2 if len7 == 126 else 8 if len7 == 127 else 0
    mask = 4 if head[1] & 0x80 else 0
    return 2 + extended + mask


def _payload_bytes(head: bytes | bytearray) -> int:
    len7 = head[1] & 0x7F
    if len7 == 126:
        return int.from_bytes(head[2:4], "big")
    if len7 == 127:
        return int.from_bytes(head[2:10], "big")
    return len7


class FrameSizeGuard:
    """Stands in front of aiohttp's WebSocket parser, passing it what `FrameFilter` lets through,
    and calls `on_violation` once when a frame or message goes over its limit."""

    def __init__(self, parser: Any, on_violation: Callable[[str], None], max_frame_bytes: int) -> None:
        self.parser = parser
        self.on_violation = on_violation
        self.filter = FrameFilter(max_frame_bytes)

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        passed, problem = self.filter.feed(bytes(data))
        if problem is not None:
            self.on_violation(problem)
        if not passed:
            return False, b""
        return self.parser.feed_data(passed)  # type: ignore[no-any-return]

    def feed_eof(self) -> None:
        self.parser.feed_eof()


class ApiGatewaySocket(web.WebSocketResponse):
    """A server-side WebSocket with API Gateway's limits: messages up to 128 KiB, client frames up
    to 32 KiB, 1009 beyond either. (Reaches into aiohttp's parser hook: the local stack only.)"""

    def __init__(self, **kwargs: Any) -> None:
        # The filter enforces 128 KiB; aiohttp's own check (which trips at the limit itself and
        # then resets the connection) only backs it up.
        super().__init__(max_msg_size=2 * MAX_MESSAGE_BYTES, **kwargs)
        self._closing_task: asyncio.Task[bool] | None = None

    def _post_start(self, request: Any, protocol: Any, writer: Any) -> None:
        super()._post_start(request, protocol, writer)
        guard = FrameSizeGuard(self._parser, self._close_too_big, MAX_CLIENT_FRAME_BYTES)
        self._parser = guard  # type: ignore[assignment]
        request.protocol._payload_parser = guard

    def _close_too_big(self, problem: str) -> None:
        reason = problem.encode()[:123]  # a close frame's reason fits 123 bytes
        self._closing_task = asyncio.get_running_loop().create_task(
            self.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=reason)
        )
