"""The field types client frames are made of, each checked as it parses: base64 payloads by their
decoded size (ciphertexts, public keys, to-device messages), content types, cursors."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from chat_backend.models.common import MAX_CIPHERTEXT_BYTES


def _decoded_size(value: str, what: str) -> int:
    """Bytes that base64 `value` decodes to; ValueError if it is not base64."""
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not valid base64") from exc


def _decode_ciphertext(value: str) -> str:
    size = _decoded_size(value, "ciphertext")
    if size > MAX_CIPHERTEXT_BYTES:
        raise CiphertextTooLarge(size)
    return value


class CiphertextTooLarge(ValueError):
    """A message's ciphertext over MAX_CIPHERTEXT_BYTES: TOO_LARGE, not BAD_REQUEST (frame_parsing.py)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"ciphertext is {size} bytes decoded; at most {MAX_CIPHERTEXT_BYTES}")


Ciphertext = Annotated[str, StringConstraints(min_length=1), AfterValidator(_decode_ciphertext)]


MAX_KEY_BYTES = 1024  # a public key or signature, decoded


def _decode_key(value: str) -> str:
    # Olm's convention is base64 without padding (vodozemac, libolm); padded is as welcome.
    size = _decoded_size(value + "=" * (-len(value) % 4), "key")
    if size > MAX_KEY_BYTES:
        raise ValueError(f"{size} bytes decoded; at most {MAX_KEY_BYTES}")
    return value


# Public key material: base64, at most 1 KiB decoded. The server never looks inside.
KeyBytes = Annotated[
    str, StringConstraints(min_length=1, max_length=4 * MAX_KEY_BYTES), AfterValidator(_decode_key)
]
KeyId = Annotated[int, Field(ge=0, le=2**32 - 1)]

# A to-device message carries key material (an Olm message): small, whatever the group.
MAX_TO_DEVICE_BYTES = 8 * 1024


def _decode_to_device(value: str) -> str:
    size = _decoded_size(value, "ciphertext")
    if size > MAX_TO_DEVICE_BYTES:
        raise ValueError(f"a to-device ciphertext is at most {MAX_TO_DEVICE_BYTES} bytes decoded")
    return value


ToDeviceCiphertext = Annotated[str, StringConstraints(min_length=1), AfterValidator(_decode_to_device)]

# getChatDevices' cursor: where the previous page stopped, `<userId>` (after that member) or
# `<userId>.<deviceId>` (inside that member's devices). Opaque to clients: they pass it back.
ChatDevicesCursor = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64})?$")
]

# type/subtype of RFC 6838 restricted-name characters, parameters not allowed (the policy matches exactly).
ContentType = Annotated[
    str,
    StringConstraints(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
    ),
]
