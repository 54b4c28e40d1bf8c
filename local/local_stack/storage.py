"""Where `make run` keeps its data between runs, and the stream pollers' checkpoints.

    <data>/dynamodb/       DynamoDB Local's database (-dbPath, -sharedDb): tables and their streams
    <data>/s3/, <data>/sqs/  moto's objects and queued messages, written through (moto_persistence.py)
    <data>/checkpoints/    one file per stream poller: the last record done with, per shard
    <data>/.lock           held while a stack runs on this directory

`CHAT_DATA_DIR` names the directory (default `.chat-data/` in the project); `CHAT_EPHEMERAL=1`
keeps everything in memory, as the tests do.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from local_stack.processes import REPO

log = logging.getLogger("local_stack")

DEFAULT_DATA_DIR = REPO / ".chat-data"


def data_dir_from_env(env: Mapping[str, str]) -> Path | None:
    """The data directory, or None when the stack is ephemeral (CHAT_EPHEMERAL=1)."""
    if env.get("CHAT_EPHEMERAL", "").strip().lower() in ("1", "true", "yes"):
        return None
    return Path(env.get("CHAT_DATA_DIR") or DEFAULT_DATA_DIR).expanduser().resolve()


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` all at once: a reader (or a restart after a kill) sees the old
    file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DataDirLock:
    """One stack per data directory: a second one would open the same DynamoDB Local file."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / ".lock"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise SystemExit(
                f"another local stack uses {self.path.parent}: stop it, or set CHAT_DATA_DIR"
            ) from None
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None


class CheckpointFile:
    """A stream poller's checkpoints: per shard, the sequence number of the last record done with.
    Written whenever one moves (atomically), read once at start. Checkpoints of another stream
    (the table was recreated: a new stream ARN) are ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: dict[str, str] = {}

    def load(self, stream_arn: str) -> dict[str, str]:
        try:
            saved = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("checkpoints %s unreadable (%r): starting from the stream's end", self.path, exc)
            return {}
        if not isinstance(saved, dict) or saved.get("streamArn") != stream_arn:
            return {}
        shards = saved.get("shards")
        if not isinstance(shards, dict):
            return {}
        self._written = {str(k): str(v) for k, v in shards.items() if isinstance(v, str)}
        return dict(self._written)

    def save(self, stream_arn: str, shards: Mapping[str, str]) -> None:
        """Write the checkpoints if any moved since the last write."""
        if dict(shards) == self._written:
            return
        body = json.dumps({"streamArn": stream_arn, "shards": dict(shards)}, sort_keys=True)
        atomic_write(self.path, body.encode())
        self._written = dict(shards)
