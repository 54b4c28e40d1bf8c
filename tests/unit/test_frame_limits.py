"""API Gateway's frame rules, both sides: the SDK's fragmenting (chat_client/wire.py) and the local
gateway's frame-header scanner (local_stack/frame_limits.py)."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest

from chat_client.wire import MAX_FRAME_BYTES, fragments, send_text
from local_stack.frame_limits import FrameFilter


def test_a_long_frame_is_cut_into_parts_of_at_most_32_kib_that_join_back() -> None:
    # Given a 100 KiB frame text with multi-byte characters throughout
    text = ("a\N{SNOWMAN}b\N{GRINNING FACE}" * 20_000)[: 100 * 1024]
    # When it is cut into fragments
    parts = fragments(text)
    # Then each is at most 32 KiB of UTF-8, none splits a character, and they join to the text
    assert len(parts) >= 4
    assert all(len(p.encode()) <= MAX_FRAME_BYTES for p in parts)
    assert "".join(parts) == text


class RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, message: Any) -> None:
        self.sent.append(message)


async def test_a_short_frame_goes_as_one_frame_and_a_long_one_as_continuation_frames() -> None:
    # Given a socket that records what it is asked to send
    ws = RecordingSocket()
    # When a 1 KiB and a 40 KiB frame are sent
    await send_text(ws, "x" * 1024)
    await send_text(ws, "y" * 40 * 1024)
    # Then the first is one str (one frame), the second a list of parts (one fragmented message)
    assert ws.sent[0] == "x" * 1024
    assert isinstance(ws.sent[1], list) and "".join(ws.sent[1]) == "y" * 40 * 1024


def frame(payload_len: int, *, masked: bool = True, fin: bool = True, opcode: int = 1) -> bytes:
    """An RFC 6455 frame with a payload of `payload_len` bytes."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if payload_len < 126:
        head = bytes([first, mask_bit | payload_len])
    elif payload_len < 65536:
        head = bytes([first, mask_bit | 126]) + struct.pack("!H", payload_len)
    else:
        head = bytes([first, mask_bit | 127]) + struct.pack("!Q", payload_len)
    return head + (os.urandom(4) if masked else b"") + b"p" * payload_len


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000, 1 << 20])
def test_frames_within_the_limits_pass_unchanged_and_the_first_over_is_cut_out(chunk: int) -> None:
    # Given a stream: frames of 10 B, of 32 KiB exactly (a first fragment), a 200 B continuation,
    # then a frame of 32 KiB + 1, a data frame after it, and the client's close frame
    limit = 32 * 1024
    good = frame(10) + frame(limit, fin=False) + frame(200, opcode=0)
    close = frame(2, opcode=8)
    stream = good + frame(limit + 1) + frame(5) + close
    # When it is fed in chunks of `chunk` bytes
    kept = FrameFilter(limit)
    passed, problems = b"", []
    for start in range(0, len(stream), chunk):
        out, problem = kept.feed(stream[start : start + chunk])
        passed += out
        problems += [problem] if problem else []
    # Then what passes is the good frames and the close frame, byte for byte, and the problem is
    # reported once
    assert passed == good + close
    assert problems == [f"a frame of {limit + 1} bytes; at most {limit}"]


def test_64_bit_lengths_are_read_and_a_frame_at_the_limit_passes() -> None:
    # Given a filter with a 100 KiB frame limit and no message limit to speak of
    kept = FrameFilter(100 * 1024, max_message=10**9)
    # When a frame of 70,000 bytes (64-bit length form), then one of 200,000 bytes arrive
    first = frame(70_000)
    # Then the first passes whole, the second not at all
    assert kept.feed(first) == (first, None)
    assert kept.feed(frame(200_000, masked=False)) == (b"", "a frame of 200000 bytes; at most 102400")


def test_the_fragment_that_takes_a_message_over_128_kib_is_cut_out_with_the_rest() -> None:
    # Given 32 KiB frames: a whole 4-fragment message of exactly 128 KiB, then a message whose
    # fifth fragment goes over (a ping in between counts for nothing)
    k32 = 32 * 1024
    whole = frame(k32, fin=False) + frame(k32, fin=False, opcode=0) * 2 + frame(k32, opcode=0)
    over = frame(k32, fin=False) + frame(100, opcode=9) + frame(k32, fin=False, opcode=0) * 3
    kept = FrameFilter(k32)
    # When they arrive, then a fifth and a sixth fragment
    # Then everything up to the fifth fragment passes, and nothing of the fifth or sixth
    assert kept.feed(whole + over) == (whole + over, None)
    assert kept.feed(frame(1, fin=False, opcode=0) + frame(1, opcode=0)) == (
        b"",
        "a message of over 131072 bytes",
    )
