"""Properties of the frame parser (hypothesis): whatever text a client sends, every route's
parsing answers a frame or a clear BAD_REQUEST / TOO_LARGE, never anything else, and every
answer can be written back as UTF-8 JSON."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat_backend.errors import BadRequest, TooLarge
from chat_backend.models import client_frames
from chat_backend.models.client_frames import ClientFrame
from chat_backend.models.frame_parsing import decode_body, parse_frame
from chat_backend.routes import handle_route
from tests.unit.helpers import no_limits
from tests.unit.lambda_events import message_event

FRAME_MODELS: list[type[ClientFrame]] = [
    model
    for model in vars(client_frames).values()
    if isinstance(model, type) and issubclass(model, ClientFrame) and "action" in model.model_fields
]
ACTIONS = sorted({a for m in FRAME_MODELS for a in m.model_fields["action"].annotation.__args__})  # type: ignore[union-attr]

# JSON values of every kind, with the strings and numbers hostile clients send: lone surrogates,
# 60-digit numbers, empty and huge ids.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(codec=None, categories=None), max_size=80),
    st.sampled_from(["c_9", "u_bob", "m_1_abc", "system", "\ud800", "", "a" * 65, "READ", "direct"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "requestId",
    "clientMsgId",
    "chatId",
    "userId",
    "ciphertext",
    "cursors",
    "limit",
    "members",
    "kind",
    "name",
    "type",
    "serverMsgId",
    "upToSeq",
    "subscribe",
    "unsubscribe",
    "only",
    "cursor",
    "groupAdd",
    "size",
    "contentType",
    "mediaId",
    "mediaIds",
    "identityKey",
    "signedPreKey",
]
frames = st.fixed_dictionaries({"action": st.sampled_from(ACTIONS)}, optional={f: values for f in FIELDS})


def model_of(action: str) -> type[ClientFrame]:
    return next(m for m in FRAME_MODELS if action in m.model_fields["action"].annotation.__args__)  # type: ignore[union-attr]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames)
def test_any_frame_parses_or_is_a_clear_refusal(frame: dict[str, Any]) -> None:
    # Given any frame a client could send as JSON text
    text = json.dumps(frame)
    # When it is decoded and parsed with its action's model
    try:
        parsed = parse_frame(model_of(frame["action"]), decode_body(text))
    except (BadRequest, TooLarge) as refusal:
        # Then a refusal says why, in text that can be sent
        assert refusal.message and refusal.message.encode("utf-8")
        return
    # Or it parsed into that action's frame
    assert parsed.action == frame["action"]  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames)
def test_a_route_answers_any_frame_with_a_frame_or_a_clear_error_never_internal(
    frame: dict[str, Any],
) -> None:
    # Given any frame, sent to its route (the use case itself answers nothing)
    event = message_event(json.dumps(frame), route_key=frame["action"])
    # When the route handles it
    response = handle_route(event, model_of(frame["action"]), lambda caller, parsed: None, no_limits())
    # Then it answers nothing (parsed and handled) or an ERROR that is not INTERNAL, as UTF-8 JSON
    if "body" in response:
        answer = json.loads(response["body"].encode("utf-8"))
        assert answer["type"] == "ERROR" and answer["code"] in ("BAD_REQUEST", "TOO_LARGE"), answer


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_at_all_is_decoded_or_refused_as_bad_request(text: str) -> None:
    # Given any text (not even JSON), When it is decoded, Then a JSON object or BAD_REQUEST
    try:
        assert isinstance(decode_body(text), dict)
    except BadRequest as refusal:
        assert refusal.message
