"""moto keeps S3 and SQS in memory only: this writes them through to a data directory, and reads
them back when moto starts again (local stack only; moto has no disk backend).

S3, `<data>/s3/<bucket>/`: `.bucket.json` (account, region), then one file per object, named by
the SHA-256 of its key: a JSON header line (key, metadata, tags, storage class, last modified)
and the body. After each request that touched objects (PutObject, a presigned POST, multipart
completion, CopyObject, DeleteObject(s), object tagging) the touched keys' current versions are
written (or removed). Only the current version of a key is kept; older versions of a versioned
bucket are not. Loaded before moto serves.

SQS, `<data>/sqs/<account>/<region>/<queue>/`: one file per message still on its queue, named
in the order the queue received them, written when SQS accepts a message (SendMessage, a batch
entry, a redrive to the DLQ, which moves the file), removed when it is deleted or purged. A
queue gets its messages back when it is created again (the stack's bootstrap does that before
any poller runs): in order, with their bodies, attributes, FIFO group and dedup ids and any delay
still to run; those in flight at the stop are visible at once (nothing is processing them); the
receive count starts again from the count at sending.

Every file is replaced atomically (temp file + rename): a kill leaves the old file or the new.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from moto.s3.models import FakeKey, S3Backend, s3_backends
from moto.sqs.models import Message, Queue, SQSBackend

from local_stack.storage import atomic_write

log = logging.getLogger("local_stack.moto")

F = Callable[..., Any]
BUCKET_FILE = ".bucket.json"


class _Touched(threading.local):
    """The S3 keys the current request touched; None outside a request (then written at once)."""

    keys: set[tuple[S3Backend, str, str]] | None = None


class MotoStore:
    def __init__(self, data_dir: Path) -> None:
        self.s3_dir = data_dir / "s3"
        self.sqs_dir = data_dir / "sqs"
        self._touched = _Touched()
        self._loading = False
        # A key's file is written from its state read under the lock, so the last write holds the
        # last state; a message's file is written before anyone can delete the message.
        self._s3_lock = threading.Lock()
        self._sqs_lock = threading.Lock()
        self._order = itertools.count()
        self._run = time.time_ns()  # file names sort by run, then by arrival within it
        self._message_files: dict[str, Path] = {}  # message id -> its file

    # --- requests ---------------------------------------------------------------------------------

    def wsgi(self, app: Callable[..., Any]) -> Callable[..., Any]:
        """The moto app, writing the S3 keys each request touched once it has answered (so what
        the request set after creating an object, its metadata and tags, is written too)."""

        def persisting_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            self._touched.keys = set()
            try:
                return app(environ, start_response)
            finally:
                touched, self._touched.keys = self._touched.keys, None
                for backend, bucket, key in touched:
                    self._write_key(backend, bucket, key)

        return persisting_app

    def _touch(self, backend: S3Backend, bucket: str, key: str) -> None:
        if self._loading:
            return
        if self._touched.keys is None:
            self._write_key(backend, bucket, key)
        else:
            self._touched.keys.add((backend, bucket, key))

    # --- S3 ---------------------------------------------------------------------------------------

    def _bucket_dir(self, bucket: str) -> Path:
        return self.s3_dir / bucket

    def _object_path(self, bucket: str, key: str) -> Path:
        return self._bucket_dir(bucket) / hashlib.sha256(key.encode()).hexdigest()

    def _write_bucket(self, backend: S3Backend, bucket: str, region: str) -> None:
        if self._loading:
            return
        body = {"account": backend.account_id, "region": region}
        atomic_write(self._bucket_dir(bucket) / BUCKET_FILE, json.dumps(body).encode())

    def _write_key(self, backend: S3Backend, bucket_name: str, key_name: str) -> None:
        with self._s3_lock:
            self._write_key_locked(backend, bucket_name, key_name)

    def _write_key_locked(self, backend: S3Backend, bucket_name: str, key_name: str) -> None:
        path = self._object_path(bucket_name, key_name)
        bucket = backend.buckets.get(bucket_name)
        key = bucket.keys.get(key_name) if bucket is not None else None
        try:
            if not isinstance(key, FakeKey):  # deleted (or a delete marker)
                path.unlink(missing_ok=True)
                return
            header = {
                "key": key.name,
                "metadata": dict(key.metadata),
                "tags": backend.tagger.get_tag_dict_for_resource(key.arn),
                "storageClass": key.storage_class,
                "lastModified": key.last_modified.isoformat(),
                "size": key.size,
            }
            atomic_write(path, json.dumps(header).encode() + b"\n" + key.value)
        except OSError as exc:
            log.error("s3://%s/%s not written to %s: %r", bucket_name, key_name, path, exc)

    def load_s3(self) -> int:
        """Create the kept buckets and put their objects back; returns how many objects."""
        loaded = 0
        self._loading = True
        try:
            for bucket_file in sorted(self.s3_dir.glob(f"*/{BUCKET_FILE}")):
                loaded += self._load_bucket(bucket_file.parent)
        finally:
            self._loading = False
        return loaded

    def _load_bucket(self, bucket_dir: Path) -> int:
        where = json.loads((bucket_dir / BUCKET_FILE).read_text())
        region = where["region"]
        backend = s3_backends[where["account"]]["aws"]
        if bucket_dir.name not in backend.buckets:
            backend.create_bucket(bucket_dir.name, region)
        loaded = 0
        for path in sorted(bucket_dir.iterdir()):
            if path.name.startswith("."):
                continue
            try:
                header_line, body = path.read_bytes().split(b"\n", 1)
                header = json.loads(header_line)
                if len(body) != header["size"]:
                    raise ValueError(f"{len(body)} bytes, header says {header['size']}")
            except (OSError, ValueError, KeyError) as exc:
                log.error("skipping unreadable object file %s: %r", path, exc)
                continue
            key = backend.put_object(bucket_dir.name, header["key"], body, storage=header.get("storageClass"))
            key.set_metadata(header.get("metadata") or {})
            key.last_modified = datetime.fromisoformat(header["lastModified"])
            if header.get("tags"):
                backend.put_object_tagging(key, header["tags"])
            loaded += 1
        return loaded

    # --- SQS --------------------------------------------------------------------------------------

    def _queue_dir(self, queue: Queue) -> Path:
        return self.sqs_dir / queue.account_id / queue.region / queue.name

    def _write_message(self, queue: Queue, message: Message) -> None:
        """`message` was just accepted by `queue` (sent, or redriven there from its source)."""
        old = self._message_files.get(message.id)
        path = self._queue_dir(queue) / f"{self._run:020d}-{next(self._order):012d}-{message.id}.json"
        body = {
            "id": message.id,
            "body": message.body,
            "messageAttributes": message.message_attributes,
            "systemAttributes": message.system_attributes,
            "groupId": message.group_id,
            "deduplicationId": message.deduplication_id,
            "sequenceNumber": message.sequence_number,
            "sentTimestamp": message.sent_timestamp,
            "delayedUntil": message.delayed_until,
            "receiveCount": message.approximate_receive_count,
        }
        try:
            atomic_write(path, json.dumps(body).encode())
            self._message_files[message.id] = path
            if old is not None and old != path:
                old.unlink(missing_ok=True)
        except (OSError, TypeError, ValueError) as exc:
            log.error("message %s of %s not written: %r", message.id, queue.name, exc)

    def _forget_messages(self, ids: Iterable[str]) -> None:
        for message_id in ids:
            path = self._message_files.pop(message_id, None)
            if path is not None:
                path.unlink(missing_ok=True)

    def _restore_queue(self, queue: Queue) -> int:
        """Put a recreated queue's kept messages back, in the order it received them."""
        queue_dir = self._queue_dir(queue)
        messages = []
        for path in sorted(queue_dir.glob("*.json")):
            try:
                saved = json.loads(path.read_text())
                message = Message(saved["id"], saved["body"], saved.get("systemAttributes") or {})
            except (OSError, ValueError, KeyError) as exc:
                log.error("skipping unreadable message file %s: %r", path, exc)
                continue
            message.message_attributes = saved.get("messageAttributes") or {}
            message.group_id = saved.get("groupId")
            message.deduplication_id = saved.get("deduplicationId")
            message.sequence_number = saved.get("sequenceNumber")
            message.sent_timestamp = saved.get("sentTimestamp")
            message.delayed_until = float(saved.get("delayedUntil") or 0.0)
            message.approximate_receive_count = int(saved.get("receiveCount") or 0)
            messages.append(message)
            self._message_files[message.id] = path
        with queue._messages_lock:
            queue._messages.extend(messages)
            queue._messages_lock.notify_all()
        return len(messages)

    # --- hooks ------------------------------------------------------------------------------------

    def install(self) -> None:
        """Wrap moto's backends so every change is written through (for this process's life)."""
        global _active
        _active = self
        for cls, name, hook in _HOOKS:
            original = cls.__dict__[name]
            if not getattr(original, "_persisting", False):
                wrapped = functools.wraps(original)(_dispatch(original, hook))
                wrapped._persisting = True  # type: ignore[attr-defined]
                setattr(cls, name, wrapped)


_active: MotoStore | None = None


def uninstall() -> None:
    """Stop writing through (the wrappers stay, passing straight to moto). Tests only."""
    global _active
    _active = None


def _dispatch(original: Callable[..., Any], hook: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        store = _active
        if store is None:
            return original(*args, **kwargs)
        return hook(store, original, *args, **kwargs)

    return call


# Each hook: (store, moto's method, its arguments...) -> what moto's method returns.


def _then(record: Callable[..., None]) -> Callable[..., Any]:
    """An S3 hook: moto's method runs, then `record(store, backend, what it returned, its
    arguments...)` writes down what it changed."""

    def hook(store: MotoStore, original: F, self: S3Backend, *a: Any, **k: Any) -> Any:
        result = original(self, *a, **k)
        record(store, self, result, *a, **k)
        return result

    return hook


def _key_named(
    store: MotoStore, s3: S3Backend, _result: Any, bucket: str, key: str, *_args: Any, **_kwargs: Any
) -> None:
    store._touch(s3, bucket, key)


def _key_returned(store: MotoStore, s3: S3Backend, key: FakeKey, *_args: Any, **_kwargs: Any) -> None:
    store._touch(s3, key.bucket_name, key.name)  # type: ignore[arg-type]


def _key_given(
    store: MotoStore, s3: S3Backend, _result: Any, key: FakeKey, *_args: Any, **_kwargs: Any
) -> None:
    store._touch(s3, key.bucket_name, key.name)  # type: ignore[arg-type]


def _bucket_created(
    store: MotoStore, s3: S3Backend, _result: Any, bucket: str, region: str, *_args: Any, **_kwargs: Any
) -> None:
    store._write_bucket(s3, bucket, region)


def _bucket_deleted(
    store: MotoStore, s3: S3Backend, deleted: Any, bucket: str, *_args: Any, **_kwargs: Any
) -> None:
    if deleted is not None:
        shutil.rmtree(store._bucket_dir(bucket), ignore_errors=True)


def _add_message(store: MotoStore, original: F, self: Queue, message: Message) -> None:
    with store._sqs_lock:  # the files' order is the queue's order
        original(self, message)
        if any(m is message for m in _newest_first(self._messages)):  # not dropped as a FIFO duplicate
            store._write_message(self, message)


def _newest_first(messages: list[Message]) -> Iterator[Message]:
    return reversed(messages)


def _delete_message(store: MotoStore, original: F, self: Queue, receipt_handle: str) -> None:
    with store._sqs_lock:
        ids = {m.id for m in self._messages if m.had_receipt_handle(receipt_handle)}
        original(self, receipt_handle)
        remaining = {m.id for m in self._messages}
        store._forget_messages(ids - remaining)


def _purge_queue(store: MotoStore, original: F, self: SQSBackend, queue_name: str) -> None:
    with store._sqs_lock:
        ids = {m.id for m in self.get_queue(queue_name)._messages}
        original(self, queue_name)
        store._forget_messages(ids)


def _delete_queue(store: MotoStore, original: F, self: SQSBackend, queue_name: str) -> None:
    with store._sqs_lock:
        queue = self.get_queue(queue_name)
        ids = {m.id for m in queue._messages}
        original(self, queue_name)
        store._forget_messages(ids)
        shutil.rmtree(store._queue_dir(queue), ignore_errors=True)


def _create_queue(store: MotoStore, original: F, self: SQSBackend, name: str, *a: Any, **k: Any) -> Queue:
    queue: Queue = original(self, name, *a, **k)
    if not getattr(queue, "_restored", False):
        queue._restored = True  # type: ignore[attr-defined]
        if restored := store._restore_queue(queue):
            log.info("queue %s: %d kept messages back", queue.name, restored)
    return queue


_HOOKS: list[tuple[type, str, Callable[..., Any]]] = [
    (S3Backend, "put_object", _then(_key_returned)),
    (S3Backend, "put_object_tagging", _then(_key_given)),
    (S3Backend, "delete_object_tagging", _then(_key_named)),
    (S3Backend, "delete_object", _then(_key_named)),
    (S3Backend, "create_bucket", _then(_bucket_created)),
    (S3Backend, "delete_bucket", _then(_bucket_deleted)),
    (Queue, "add_message", _add_message),
    (Queue, "delete_message", _delete_message),
    (SQSBackend, "purge_queue", _purge_queue),
    (SQSBackend, "delete_queue", _delete_queue),
    (SQSBackend, "create_queue", _create_queue),
]
