"""How a frame's text becomes a client frame (client_frames.py), and which protocol error each
problem gets: BAD_REQUEST, or TOO_LARGE for a frame or ciphertext over its limit."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import ValidationError

from chat_backend.errors import BadRequest, TooLarge
from chat_backend.models.client_frames import ClientFrame
from chat_backend.models.common import MAX_FRAME_BYTES
from chat_backend.models.frame_fields import CiphertextTooLarge

F = TypeVar("F", bound=ClientFrame)


def decode_body(body: str | None) -> dict[str, Any]:
    """The frame as a JSON object, or BadRequest / TooLarge."""
    if body is None:
        raise BadRequest("empty frame")
    if len(body.encode()) > MAX_FRAME_BYTES:
        raise TooLarge(f"frame is over {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except ValueError as exc:
        raise BadRequest("frame is not valid JSON") from exc
    except RecursionError as exc:  # the parser recurses per nesting level
        raise BadRequest("frame nests too deeply") from exc
    if not isinstance(data, dict):
        raise BadRequest("frame is not a JSON object")
    try:
        # A \ud800 escape decodes to a lone surrogate, which no answer could echo or store.
        json.dumps(data, ensure_ascii=False, allow_nan=False).encode()
    except (UnicodeEncodeError, ValueError) as exc:
        raise BadRequest("frame has a string that is not valid Unicode (a lone surrogate)") from exc
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_frame(model: type[F], data: dict[str, Any]) -> F:
    """Validate a decoded frame; map the first problem to the protocol's error."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            ctx_error = (err.get("ctx") or {}).get("error")
            if isinstance(ctx_error, CiphertextTooLarge):
                raise TooLarge(str(ctx_error)) from exc
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])[:100] or "frame"  # loc may hold a client's key
        raise BadRequest(f"{where}: {first['msg']}") from exc


def echo_ids(data: dict[str, Any] | None) -> dict[str, str | None]:
    """requestId / clientMsgId of a frame, when it had them, for the ERROR it gets."""
    data = data or {}
    return {
        key: value if isinstance(value, str) and len(value) <= 128 else None
        for key, value in (("requestId", data.get("requestId")), ("clientMsgId", data.get("clientMsgId")))
    }
