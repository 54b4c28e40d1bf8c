"""A device's end-to-end encryption state on disk: one file per user and device, encrypted at rest,
written atomically, held by one process at a time.

- Encrypted with AES-256-GCM under a key the application supplies (32 bytes); the file's
  associated data binds it to its user and device, so a file copied under another identity does
  not open. The vodozemac objects inside are pickled with a key derived from the same one.
- Atomic: each save writes a temporary file beside it, fsyncs it and renames it over the old one,
  so a crash leaves the previous state or the new one, never half of one.
- One process at a time: an exclusive lock on `<file>.lock` for as long as the store is open; a
  second opener gets StoreLocked at once (two processes ratcheting the same Olm sessions would
  corrupt them).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT = 1


class StoreLocked(Exception):
    """Another process has this device's store open."""


class StoreUnreadable(Exception):
    """The store does not open with this key (wrong key, another identity's file, or damage)."""


def new_store_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def store_key_from_file(path: Path) -> bytes:
    """The key kept in `path` (base64), made and written there (0600) the first time."""
    if path.exists():
        key = base64.b64decode(path.read_text().strip())
    else:
        key = new_store_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(base64.b64encode(key).decode() + "\n")
    if len(key) != KEY_BYTES:
        raise StoreUnreadable(f"{path} does not hold a {KEY_BYTES}-byte key")
    return key


class DeviceStore:
    """`open()` it (it locks), `load()` / `save(state)` a JSON-able dict, `close()` it."""

    def __init__(self, directory: Path, user_id: str, device_id: str, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the store key must be {KEY_BYTES} bytes")
        self.path = store_path(directory, user_id, device_id)
        self._aad = json.dumps({"user": user_id, "device": device_id, "format": FORMAT}).encode()
        self._aead = AESGCM(key)
        # vodozemac pickles take a 32-byte key of their own: derived, so the file key never is one.
        self.pickle_key = hashlib.sha256(b"chat-client pickle key\0" + key).digest()
        self._lock: IO[str] | None = None

    def open(self) -> DeviceStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{self.path}.lock", "a")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock.close()
            raise StoreLocked(f"{self.path} is open in another process") from exc
        self._lock = lock
        return self

    def close(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> DeviceStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when nothing was saved yet."""
        self._check_open()
        if not self.path.exists():
            return None
        blob = self.path.read_bytes()
        try:
            plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], self._aad)
        except (InvalidTag, ValueError) as exc:
            raise StoreUnreadable(f"{self.path} does not open with this key") from exc
        state = json.loads(plain)
        if not isinstance(state, dict):
            raise StoreUnreadable(f"{self.path} holds no state")
        return state

    def save(self, state: dict[str, Any]) -> None:
        self._check_open()
        nonce = secrets.token_bytes(NONCE_BYTES)
        blob = nonce + self._aead.encrypt(nonce, json.dumps(state, sort_keys=True).encode(), self._aad)
        tmp = self.path.with_name(f"{self.path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)

    def _check_open(self) -> None:
        if self._lock is None:
            raise RuntimeError("open() the store first")


def store_path(directory: Path, user_id: str, device_id: str) -> Path:
    """Where the store of (user, device) lives in `directory` (a key file may sit beside it)."""
    return Path(directory) / f"{_safe(user_id)}.{_safe(device_id)}.store"


def _safe(name: str) -> str:
    """A file name part: ids are [A-Za-z0-9_-] already (the protocol's Id); anything else is hashed."""
    if name and all(c.isalnum() or c in "_-" for c in name):
        return name
    return hashlib.sha256(name.encode()).hexdigest()[:32]
