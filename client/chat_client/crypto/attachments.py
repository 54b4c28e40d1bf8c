"""Media encrypted on the client (the Matrix attachment scheme): AES-256-CTR under a random key
and IV per file, SHA-256 over the ciphertext. The key, IV and hash travel inside the encrypted
message that carries the mediaId; the server and the bucket only ever see the ciphertext."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class AttachmentCorrupt(Exception):
    """The downloaded bytes are not what was uploaded (their SHA-256 differs)."""


@dataclass(frozen=True)
class AttachmentKey:
    key: bytes  # 32 bytes
    iv: bytes  # 16 bytes: a random 64-bit nonce, then a 64-bit block counter from 0
    sha256: bytes  # of the ciphertext

    def to_json(self) -> dict[str, Any]:
        return {
            k: base64.b64encode(v).decode()
            for k, v in (("key", self.key), ("iv", self.iv), ("sha256", self.sha256))
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> AttachmentKey:
        return cls(*(base64.b64decode(str(value[k])) for k in ("key", "iv", "sha256")))


def encrypt_attachment(plaintext: bytes) -> tuple[bytes, AttachmentKey]:
    key, iv = secrets.token_bytes(32), secrets.token_bytes(8) + bytes(8)
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext, AttachmentKey(key, iv, hashlib.sha256(ciphertext).digest())


def decrypt_attachment(ciphertext: bytes, key: AttachmentKey) -> bytes:
    """The plaintext, after checking the ciphertext's hash (before decrypting anything)."""
    if not hmac.compare_digest(hashlib.sha256(ciphertext).digest(), key.sha256):
        raise AttachmentCorrupt("the attachment's SHA-256 does not match")
    decryptor = Cipher(algorithms.AES(key.key), modes.CTR(key.iv)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()
