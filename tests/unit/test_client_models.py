"""The SDK's frame values (client/chat_client/models.py): each field read from its frame key, as its
type says, and a malformed frame refused by name."""

import base64
import logging

import pytest

from chat_client.models import Ack, Message, ToDevice, Void, parse_frame

MESSAGE = {
    "type": "MESSAGE",
    "chatId": "c_1",
    "seq": 7,
    "serverMsgId": "m_1",
    "from": "u_alice",
    "fromDevice": "d_1",
    "ciphertext": base64.b64encode(b"hi").decode(),
    "mediaIds": ["md_1"],
    "createdAt": "2026-01-02T03:04:05.000Z",
}


def test_each_frame_reads_into_its_value_from_the_camel_case_keys():
    # Given a MESSAGE, an ACK, a VOID and a TO_DEVICE frame, When read, Then each field has its key's value
    assert Message.from_frame(MESSAGE) == Message(
        "c_1", 7, "m_1", "u_alice", "d_1", b"hi", ["md_1"], "2026-01-02T03:04:05.000Z"
    )
    ack = {"type": "ACK", "clientMsgId": "x_1", "chatId": "c_1", "serverMsgId": "m_1", "seq": 7}
    assert Ack.from_frame(ack) == Ack("x_1", "c_1", "m_1", 7, "")
    assert Void.from_frame({"type": "VOID", "chatId": "c_1", "seq": 3}) == Void("c_1", 3)
    to_device = {"id": "t_1", "from": "u_bob", "fromDevice": "d_2", "ciphertext": "aGk=", "createdAt": None}
    assert ToDevice.from_frame(to_device) == ToDevice("t_1", "u_bob", "d_2", b"hi", "")


def test_a_system_message_may_carry_no_device_payload_or_media():
    # Given a membership announcement with neither fromDevice, ciphertext, mediaIds nor createdAt
    frame = {
        k: v for k, v in MESSAGE.items() if k not in ("fromDevice", "ciphertext", "mediaIds", "createdAt")
    }
    # When read, Then those fields are empty
    message = Message.from_frame(frame | {"from": "system"})
    assert (message.sender_device, message.ciphertext, message.media_ids, message.created_at) == (
        "",
        b"",
        [],
        "",
    )


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"seq": True}, "seq must be a positive integer"),
        ({"seq": 0}, "seq must be a positive integer"),
        ({"chatId": ""}, "chatId must be a non-empty string"),
        ({"mediaIds": [1]}, "mediaIds must be a list of strings"),
        ({"ciphertext": "not base64!"}, "ciphertext is not valid base64"),
        ({"ciphertext": None}, "ciphertext must be a base64 string"),
    ],
)
def test_a_malformed_frame_is_refused_naming_its_key(change, error):
    # Given a MESSAGE frame with one key mistyped, When read, Then ValueError names the key
    with pytest.raises(ValueError, match=error):
        Message.from_frame(MESSAGE | change)


def test_parse_frame_logs_a_malformed_frame_and_gives_none(caplog):
    # Given a TO_DEVICE frame without its ciphertext, When parsed, Then it is None and logged by type
    with caplog.at_level(logging.WARNING, logger="chat_client"):
        assert (
            parse_frame(ToDevice.from_frame, {"type": "TO_DEVICE", "id": "t", "from": "u", "fromDevice": "d"})
            is None
        )
    assert "malformed TO_DEVICE frame" in caplog.text
    # And a well-formed one is its value
    assert parse_frame(Void.from_frame, {"type": "VOID", "chatId": "c_1", "seq": 1}) == Void("c_1", 1)
