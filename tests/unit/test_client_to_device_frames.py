"""How the SDK cuts a batch of to-device messages into sendToDevice frames (chat_client/to_device.py):
one server transaction per frame, and never a frame API Gateway would refuse."""

from __future__ import annotations

import json

from chat_client.to_device import MESSAGES_PER_SEND_FRAME, SEND_FRAME_BYTES, _frames_of
from chat_client.wire import MAX_MESSAGE_BYTES


def entry(user: str, device: str, ciphertext_chars: int) -> dict[str, str]:
    return {"userId": user, "deviceId": device, "ciphertext": "A" * ciphertext_chars}


def test_a_rotation_to_999_devices_goes_in_frames_of_99_one_transaction_each() -> None:
    # Given 999 room keys of the usual size (a 636-byte payload, 848 base64 characters)
    entries = [entry(f"u_{i:06d}", "d1", 848) for i in range(999)]
    # When cut into frames
    frames = _frames_of(entries)
    # Then every frame but the last holds 99, in order, nothing lost or repeated
    assert [len(f) for f in frames] == [99] * 10 + [9]
    assert [e for f in frames for e in f] == entries
    assert MESSAGES_PER_SEND_FRAME == 99


def test_long_ids_and_big_payloads_make_smaller_frames_that_fit_api_gateway() -> None:
    # Given messages to 64-character user and device ids (the protocol's longest) with 1.2 KB each
    entries = [entry("u" * 64, "d" * 64, 1600) for _ in range(300)]
    # When cut into frames
    frames = _frames_of(entries)
    # Then each whole sendToDevice frame stays under the bound, inside API Gateway's 128 KiB
    for chunk in frames:
        frame = {"action": "sendToDevice", "txnId": "f" * 32, "chatId": "g_" + "0" * 32, "messages": chunk}
        size = len(json.dumps(frame))
        assert size <= SEND_FRAME_BYTES + 200 < MAX_MESSAGE_BYTES
    assert sum(len(f) for f in frames) == 300 and all(len(f) < 99 for f in frames)
