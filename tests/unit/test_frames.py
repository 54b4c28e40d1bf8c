"""Client frames (models/client_frames.py, models/frame_parsing.py): what parses, and which protocol
error each bad frame gets."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from chat_backend.errors import BadRequest, RateLimited, TooLarge
from chat_backend.models.client_frames import (
    CreateChatFrame,
    FetchKeysFrame,
    MediaUploadFrame,
    PresenceFrame,
    ReceiptFrame,
    SendFrame,
    SyncFrame,
)
from chat_backend.models.common import MAX_CIPHERTEXT_BYTES, MAX_FRAME_BYTES
from chat_backend.models.frame_parsing import decode_body, echo_ids, parse_frame
from chat_backend.models.server_frames import ErrorFrame
from chat_backend.routes import handle_route
from tests.unit.helpers import no_limits
from tests.unit.lambda_events import message_event


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def send_frame(**overrides: Any) -> dict[str, Any]:
    frame = {
        "action": "send",
        "clientMsgId": "7f0c1b9e-1111-4c1e-9d6a-000000000001",
        "chatId": "c_9",
        "ciphertext": b64(b"\x00\x01secret\xff"),
        "mediaIds": ["md_1"],
    }
    frame.update(overrides)
    return frame


def test_valid_send_frame_parses_with_its_bytes() -> None:
    # Given a well-formed send frame as the client writes it
    body = json.dumps(send_frame())
    # When it is decoded and parsed
    frame = parse_frame(SendFrame, decode_body(body))
    # Then every field is there and the ciphertext decodes to the bytes the client encrypted
    assert frame.client_msg_id == "7f0c1b9e-1111-4c1e-9d6a-000000000001"
    assert frame.chat_id == "c_9"
    assert frame.ciphertext_bytes == b"\x00\x01secret\xff"
    assert frame.media_ids == ["md_1"]


def test_send_frame_ignores_unknown_fields_and_defaults_media_ids() -> None:
    # Given a send frame without mediaIds and with a field the protocol does not know
    data = send_frame(futureField={"x": 1})
    del data["mediaIds"]
    # When it is parsed
    frame = parse_frame(SendFrame, data)
    # Then the unknown field is ignored and mediaIds is empty
    assert frame.media_ids == []
    assert not hasattr(frame, "futureField")


def test_valid_sync_frame_parses_and_limit_defaults_to_500() -> None:
    # Given a sync frame with cursors and no limit
    data = {"action": "sync", "requestId": "r1", "cursors": {"c_9": 4000, "c_12": 0}}
    # When it is parsed
    frame = parse_frame(SyncFrame, data)
    # Then the cursors are kept and the limit is the protocol's default
    assert frame.request_id == "r1"
    assert frame.cursors == {"c_9": 4000, "c_12": 0}
    assert frame.limit == 500


def test_sync_frame_accepts_limit_1000() -> None:
    # Given a sync frame at the maximum limit
    # When it is parsed
    frame = parse_frame(SyncFrame, {"action": "sync", "requestId": "r1", "limit": 1000})
    # Then it is accepted as is
    assert frame.limit == 1000


@pytest.mark.parametrize(
    ("data", "kind", "members", "name"),
    [
        ({"kind": "direct", "members": ["u_5"]}, "direct", ["u_5"], None),
        ({"kind": "group", "name": "team", "members": ["u_5", "u_6"]}, "group", ["u_5", "u_6"], "team"),
    ],
)
def test_valid_create_chat_frames_parse(
    data: dict[str, Any], kind: str, members: list[str], name: str | None
) -> None:
    # Given a direct and a group createChat frame
    data = {"action": "createChat", "requestId": "r2", **data}
    # When parsed
    frame = parse_frame(CreateChatFrame, data)
    # Then kind, members and name are as sent
    assert (frame.kind, frame.members, frame.name, frame.request_id) == (kind, members, name, "r2")


@pytest.mark.parametrize(
    "body",
    ['{"action": "send", "chatId": ', "not json at all", "", "{'action': 'send'}"],
    ids=["truncated", "text", "empty", "single-quotes"],
)
def test_malformed_json_is_bad_request(body: str) -> None:
    # Given a frame that is not valid JSON
    # When it is decoded
    # Then it is refused as BAD_REQUEST
    with pytest.raises(BadRequest) as err:
        decode_body(body)
    assert err.value.code == "BAD_REQUEST"


def test_json_nested_deeper_than_the_parser_goes_is_bad_request() -> None:
    # Given a frame of arrays nested as deep as fits under the frame limit (tens of thousands: 3.13's
    # parser, on its C recursion limit, takes 5,000 levels that 3.11's refused)
    depth = (MAX_FRAME_BYTES - 100) // 2
    body = '{"action": "send", "d": ' + "[" * depth + "]" * depth + "}"
    # When it is decoded
    # Then it is refused as BAD_REQUEST, not a RecursionError (the fuzzer found that: INTERNAL)
    with pytest.raises(BadRequest, match="nests too deeply"):
        decode_body(body)


@pytest.mark.parametrize("body", ["[]", '["send"]', '"send"', "42", "null", "true"])
def test_json_that_is_not_an_object_is_bad_request(body: str) -> None:
    # Given valid JSON that is not an object
    # When it is decoded
    # Then it is refused as BAD_REQUEST
    with pytest.raises(BadRequest, match="not a JSON object"):
        decode_body(body)


def test_missing_body_is_bad_request() -> None:
    # Given an event without a body
    # When it is decoded
    # Then it is BAD_REQUEST
    with pytest.raises(BadRequest):
        decode_body(None)


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (SendFrame, {k: v for k, v in send_frame().items() if k != "clientMsgId"}, "clientMsgId"),
        (SendFrame, {k: v for k, v in send_frame().items() if k != "chatId"}, "chatId"),
        (SendFrame, {k: v for k, v in send_frame().items() if k != "ciphertext"}, "ciphertext"),
        (SyncFrame, {"action": "sync", "cursors": {}}, "requestId"),
        (CreateChatFrame, {"action": "createChat", "requestId": "r", "members": ["u_5"]}, "kind"),
        (CreateChatFrame, {"action": "createChat", "requestId": "r", "kind": "group"}, "members"),
        (CreateChatFrame, {"action": "createChat", "kind": "direct", "members": ["u_5"]}, "requestId"),
    ],
)
def test_missing_action_specific_field_is_bad_request_naming_it(
    model: type[Any], data: dict[str, Any], field: str
) -> None:
    # Given a frame without one of its action's required fields
    # When it is parsed
    # Then BAD_REQUEST names the missing field
    with pytest.raises(BadRequest) as err:
        parse_frame(model, data)
    assert field in err.value.message


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (SyncFrame, {"action": "sync", "requestId": "r1", "limit": "5"}),
        (SyncFrame, {"action": "sync", "requestId": "r1", "limit": 5.0}),
        (SyncFrame, {"action": "sync", "requestId": "r1", "limit": True}),
        (SyncFrame, {"action": "sync", "requestId": "r1", "cursors": {"c_9": "4000"}}),
        (SyncFrame, {"action": "sync", "requestId": "r1", "cursors": {"c_9": -1}}),
        (SyncFrame, {"action": "sync", "requestId": "r1", "cursors": ["c_9"]}),
        (SyncFrame, {"action": "sync", "requestId": 1}),
        (SendFrame, send_frame(chatId=9)),
        (SendFrame, send_frame(chatId="c 9/../x")),
        (SendFrame, send_frame(clientMsgId=123)),
        (SendFrame, send_frame(ciphertext=["aGk="])),
        (SendFrame, send_frame(mediaIds="md_1")),
        (SendFrame, send_frame(ciphertext="")),
        (SendFrame, send_frame(action="sync")),
        (CreateChatFrame, {"action": "createChat", "requestId": "r", "kind": "channel", "members": ["u_5"]}),
        (CreateChatFrame, {"action": "createChat", "requestId": "r", "kind": "direct", "members": "u_5"}),
        (CreateChatFrame, {"action": "createChat", "requestId": "r", "kind": "direct", "members": []}),
        (
            CreateChatFrame,
            {"action": "createChat", "requestId": "r", "kind": "direct", "members": ["u_5", "u_6"]},
        ),
        (
            CreateChatFrame,
            {"action": "createChat", "requestId": "r", "kind": "group", "members": ["u_5", "u_5"]},
        ),
    ],
)
def test_ill_typed_or_invalid_field_is_bad_request(model: type[Any], data: dict[str, Any]) -> None:
    # Given a frame whose field has the wrong type or value (strict: "5" is not an int)
    # When it is parsed
    # Then it is BAD_REQUEST, never coerced
    with pytest.raises(BadRequest) as err:
        parse_frame(model, data)
    assert err.value.code == "BAD_REQUEST"


@pytest.mark.parametrize("ciphertext", ["not base64!", "aGk", "aGk=\n=", "@@@@"])
def test_ciphertext_that_is_not_base64_is_bad_request(ciphertext: str) -> None:
    # Given a send frame whose ciphertext is not valid base64
    # When it is parsed
    # Then it is BAD_REQUEST about the ciphertext
    with pytest.raises(BadRequest, match="ciphertext"):
        parse_frame(SendFrame, send_frame(ciphertext=ciphertext))


def test_ciphertext_of_exactly_64_kib_is_accepted() -> None:
    # Given a ciphertext of exactly 64 KiB decoded
    data = send_frame(ciphertext=b64(b"\xab" * MAX_CIPHERTEXT_BYTES))
    # When parsed
    frame = parse_frame(SendFrame, data)
    # Then it is accepted, bytes intact
    assert len(frame.ciphertext_bytes) == MAX_CIPHERTEXT_BYTES


def test_ciphertext_over_64_kib_decoded_is_too_large() -> None:
    # Given a ciphertext one byte over 64 KiB decoded (the frame itself is under 128 KiB)
    body = json.dumps(send_frame(ciphertext=b64(b"\xab" * (MAX_CIPHERTEXT_BYTES + 1))))
    assert len(body.encode()) < MAX_FRAME_BYTES
    # When decoded and parsed
    # Then it is TOO_LARGE, not BAD_REQUEST
    with pytest.raises(TooLarge) as err:
        parse_frame(SendFrame, decode_body(body))
    assert err.value.code == "TOO_LARGE"


def test_frame_over_128_kib_is_too_large() -> None:
    # Given a frame of 128 KiB + 1 byte (padding in an unknown field)
    base = json.dumps(send_frame(pad=""))
    body = base.replace('"pad": ""', '"pad": "' + "x" * (MAX_FRAME_BYTES + 1 - len(base)) + '"')
    assert len(body.encode()) == MAX_FRAME_BYTES + 1
    # When decoded
    # Then it is TOO_LARGE before any parsing
    with pytest.raises(TooLarge):
        decode_body(body)


def test_frame_of_exactly_128_kib_is_decoded() -> None:
    # Given a frame of exactly 128 KiB
    base = json.dumps(send_frame(pad=""))
    body = base.replace('"pad": ""', '"pad": "' + "x" * (MAX_FRAME_BYTES - len(base)) + '"')
    assert len(body.encode()) == MAX_FRAME_BYTES
    # When decoded
    # Then it is accepted
    assert decode_body(body)["action"] == "send"


@pytest.mark.parametrize("limit", [1001, 5000])
def test_sync_limit_over_1000_is_bad_request(limit: int) -> None:
    # Given a sync asking for more than 1000 messages
    # When parsed
    # Then it is BAD_REQUEST about the limit
    with pytest.raises(BadRequest, match="limit"):
        parse_frame(SyncFrame, {"action": "sync", "requestId": "r1", "limit": limit})


def test_sync_limit_zero_is_bad_request() -> None:
    # Given a sync with limit 0
    # When parsed
    # Then it is BAD_REQUEST
    with pytest.raises(BadRequest, match="limit"):
        parse_frame(SyncFrame, {"action": "sync", "requestId": "r1", "limit": 0})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"requestId": "r1", "clientMsgId": "m1"}, {"requestId": "r1", "clientMsgId": "m1"}),
        ({"requestId": "r1"}, {"requestId": "r1", "clientMsgId": None}),
        ({"clientMsgId": "m1"}, {"requestId": None, "clientMsgId": "m1"}),
        ({"requestId": 7, "clientMsgId": ["m"]}, {"requestId": None, "clientMsgId": None}),
        ({"requestId": "r" * 129}, {"requestId": None, "clientMsgId": None}),
        ({}, {"requestId": None, "clientMsgId": None}),
        (None, {"requestId": None, "clientMsgId": None}),
    ],
)
def test_echo_ids_echoes_request_and_client_msg_ids(
    data: dict[str, Any] | None, expected: dict[str, str | None]
) -> None:
    # Given a (possibly bad) frame
    # When the ids an ERROR echoes are taken from it
    # Then string ids are echoed and anything else is null
    assert echo_ids(data) == expected


# --- ERROR frames --------------------------------------------------------------------------------


def test_a_rate_limited_error_carries_retry_after_ms_and_other_errors_do_not() -> None:
    # Given a RATE_LIMITED error saying when to retry, and a FORBIDDEN one
    limited = ErrorFrame(code="RATE_LIMITED", message="busy", client_msg_id="cm-1", retry_after_ms=750)
    forbidden = ErrorFrame(code="FORBIDDEN", message="not a member", request_id="r1")
    # When they are written as JSON
    # Then RATE_LIMITED carries retryAfterMs beside the echoed ids, and FORBIDDEN has no such key
    assert json.loads(limited.to_json()) == {
        "type": "ERROR",
        "code": "RATE_LIMITED",
        "message": "busy",
        "requestId": None,
        "clientMsgId": "cm-1",
        "retryAfterMs": 750,
    }
    assert json.loads(forbidden.to_json()) == {
        "type": "ERROR",
        "code": "FORBIDDEN",
        "message": "not a member",
        "requestId": "r1",
        "clientMsgId": None,
    }


def test_rate_limited_waits_at_least_a_millisecond_and_a_second_by_default() -> None:
    # Given RATE_LIMITED errors raised with no wait, a zero wait and a negative one
    # Then the client is always told to wait: a second by default, never less than 1 ms
    assert RateLimited("busy").retry_after_ms == 1000
    assert RateLimited("busy", 0).retry_after_ms == 1
    assert RateLimited("busy", -5).retry_after_ms == 1
    assert RateLimited("busy", 250).code == "RATE_LIMITED"


# --- input that once became INTERNAL or no answer at all ------------------------------------------

SIXTY_DIGITS = "1" * 60
HOSTILE_BODIES = [
    pytest.param("sync", '{"action":"sync","requestId":"\\ud800"}', id="lone-surrogate-request-id"),
    pytest.param(
        "send", '{"action":"send","clientMsgId":"\\udc00","chatId":"c_9","ciphertext":"eA=="}', id="lone-cmid"
    ),
    pytest.param(
        "sync", '{"action":"sync","requestId":"r","cursors":{"\\ud800":1}}', id="lone-surrogate-key"
    ),
    pytest.param(
        "sync",
        '{"action":"sync","requestId":"r","cursors":{"c_9":' + SIXTY_DIGITS + "}}",
        id="60-digit-cursor",
    ),
    pytest.param(
        "receipt",
        '{"action":"receipt","chatId":"c_9","type":"READ","upToSeq":' + SIXTY_DIGITS + "}",
        id="60-digit-upToSeq",
    ),
    pytest.param("sync", '{"action":"sync","requestId":"r","limit":NaN}', id="NaN"),
    pytest.param("sync", '{"action":"sync","requestId":"r","cursors":{"c_9":Infinity}}', id="Infinity"),
    pytest.param("sync", '{"action":"sync","requestId":"r","cursors":{"c_9":1e400}}', id="huge-float"),
    pytest.param("fetchKeys", '{"action":"fetchKeys","requestId":"r","userId":"system"}', id="system-keys"),
    pytest.param(
        "createChat",
        '{"action":"createChat","requestId":"r","kind":"direct","members":["system"]}',
        id="system-member",
    ),
    pytest.param("presence", '{"action":"presence","subscribe":["system"]}', id="system-presence"),
    pytest.param(
        "mediaUpload",
        '{"action":"mediaUpload","requestId":"r","chatId":"c","contentType":"a/b","size":'
        + SIXTY_DIGITS
        + "}",
        id="60-digit-size",
    ),
]


@pytest.mark.parametrize(("route", "body"), HOSTILE_BODIES)
def test_hostile_input_gets_a_bad_request_that_can_be_sent(route: str, body: str) -> None:
    # Given a frame with a lone surrogate, a number no store can hold, a JSON constant, or the
    # reserved user id "system"
    models = {
        "sync": SyncFrame,
        "send": SendFrame,
        "receipt": ReceiptFrame,
        "fetchKeys": FetchKeysFrame,
        "createChat": CreateChatFrame,
        "presence": PresenceFrame,
        "mediaUpload": MediaUploadFrame,
    }
    used: list[Any] = []
    # When the route handles it
    response = handle_route(
        message_event(body, route_key=route), models[route], lambda c, f: used.append(f), no_limits()
    )
    # Then the answer is a BAD_REQUEST (never INTERNAL) that can be written as UTF-8, and the use
    # case never ran
    answer = json.loads(response["body"].encode("utf-8"))
    assert answer["type"] == "ERROR" and answer["code"] == "BAD_REQUEST", answer
    assert used == []
