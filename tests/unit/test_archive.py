"""Hot and archived history (logic/archive.py, dal/message_archive.py, logic/sync.py): messages past
the hot window move to the archive bucket, written and read back before they leave the messages
table; sync replays across both as if nothing had moved.

It stays whole: what the archiver moves and that reads across the archive see nothing moved are
one contract, checked over one seeded chat, one archiver run and one set of read-backs
(hourly_run, all_frames, objects); split, each half would need all of the other's."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from boto3.dynamodb.types import Binary

from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.message_archive import ArchiveRange, MessageArchive, decode
from chat_backend.dal.sequencer import archive_shard
from chat_backend.errors import NotFound
from chat_backend.logic.archive import (
    DAY_MS,
    ArchivePolicy,
    ArchiveReport,
    archive_chats,
    plan_archive,
    run_archive_job,
)
from chat_backend.logic.send import Ledger, send_message
from chat_backend.logic.sync import replay_run, sync
from chat_backend.models.client_frames import SyncFrame
from chat_backend.models.queue_payloads import ArchiveJob
from chat_backend.models.records import StoredVoid
from chat_backend.services import services
from tests.unit.conftest import AwsEnv, RecordingPoster
from tests.unit.helpers import (
    GRACE_S,
    T0,
    MakeChat,
    Receipting,
    add,
    caller,
    fill_hole,
    online,
    pushed,
    remove,
    send,
    send_frame,
    watermark,
)
from tests.unit.helpers import POLICY as SEND_POLICY

POLICY = ArchivePolicy(hot_days=30, grace_s=GRACE_S)
# "Now" for the archiver: 32 days after the seeded messages (and after anything sent in real time),
# so they are past the hot window and the day more after which a chat is listed.
NOW_S = max(time.time(), T0) + 32 * 86_400
NOW_MS = int(NOW_S * 1000)
HOT_AT = NOW_S - 86_400  # a day old at NOW: still hot


@pytest.fixture
def archive(aws_env: AwsEnv) -> MessageArchive:
    return services().archive


def hourly_run(
    ledger: Ledger,
    archive: MessageArchive,
    aws_env: AwsEnv,
    now_ms: int,
    policy: ArchivePolicy = POLICY,
    listing_pages_per_job: int | None = None,
) -> ArchiveReport:
    """The scheduled run as on AWS: its shard jobs on the archive queue, then every job taken from
    it (each as one worker invocation would run it) until none is left. With
    `listing_pages_per_job`, a shard listing runs out of time after that many pages."""
    queue = services().archive_queue
    plan_archive(queue, now_ms)
    report = ArchiveReport()
    while received := aws_env.receive_all("archive_jobs"):
        for message in received:
            job = ArchiveJob.model_validate_json(message["Body"])
            listing_stops = job.shard is not None and listing_pages_per_job is not None
            keep_going = pages_budget(listing_pages_per_job or 0) if listing_stops else (lambda: True)
            report.add(run_archive_job(ledger, archive, queue, policy, job, keep_going))
    return report


def pages_budget(pages: int) -> Callable[[], bool]:
    """keep_going for a listing that may read `pages` pages before its time runs out."""
    more = iter(range(pages - 1))
    return lambda: next(more, None) is not None


def operators_run(ledger: Ledger, archive: MessageArchive, now_ms: int, chat_ids: list[str]) -> ArchiveReport:
    return archive_chats(ledger, archive, POLICY, now_ms, lambda: True, chat_ids)


def syncing(
    ledger: Ledger, poster: RecordingPoster, user: str, cursors: dict[str, int], limit: int | None = None
) -> tuple[Any, list[dict[str, Any]]]:
    """A sync by a new device of `user`: its SYNC_DONE and the frames it was sent."""
    poster.posts.clear()
    body: dict[str, Any] = {"action": "sync", "requestId": "s", "cursors": cursors, "only": True}
    if limit is not None:
        body["limit"] = limit
    done = sync(
        ledger, poster, caller(user, "d_new"), SyncFrame.model_validate(body), GRACE_S, clock=lambda: NOW_S
    )
    return done, poster.frames()


def all_frames(
    ledger: Ledger, poster: RecordingPoster, user: str, chat_id: str, limit: int
) -> list[dict[str, Any]]:
    """Everything `user` gets of the chat paging from zero, `limit` frames a sync."""
    frames: list[dict[str, Any]] = []
    cursor = 0
    while True:
        done, page = syncing(ledger, poster, user, {chat_id: cursor}, limit)
        frames += page
        cursor = page[-1]["seq"] if page else cursor
        if not done.more:
            return frames


def seqs_in_table(aws_env: AwsEnv, chat_id: str) -> list[int]:
    return [int(m["seq"]) for m in aws_env.messages(chat_id)]


def meta(aws_env: AwsEnv, chat_id: str) -> dict[str, Any]:
    (item,) = [i for i in aws_env.scan("chats") if i["chatId"] == chat_id and i["sk"] == "META"]
    return item


def objects(aws_env: AwsEnv, chat_id: str) -> dict[str, bytes]:
    listed = aws_env.s3.list_objects_v2(Bucket=aws_env.buckets["archive"], Prefix=f"{chat_id}/")
    return {
        o["Key"]: aws_env.s3.get_object(Bucket=aws_env.buckets["archive"], Key=o["Key"])["Body"].read()
        for o in listed.get("Contents", [])
    }


@pytest.fixture
def chat(ledger: Ledger, make_chat: MakeChat) -> str:
    """alice and bob: five old messages (seqs 1-5, 40 days before NOW), then two hot ones (6, 7)."""
    chat_id = make_chat("u_alice", "u_bob")
    for n in range(5):
        send(ledger, "u_alice" if n % 2 else "u_bob", chat_id, at=NOW_S - 40 * 86_400 + n)
    for n in range(2):
        send(ledger, "u_alice", chat_id, at=HOT_AT + n)
    return chat_id


def test_the_archiver_writes_reads_back_commits_then_deletes_only_what_is_old(
    ledger: Ledger, archive: MessageArchive, aws_env: AwsEnv, chat: str
) -> None:
    # Given a chat with five messages past the hot window and two within it
    before = {int(m["seq"]): m for m in aws_env.messages(chat)}
    # When the archiver runs
    report = hourly_run(ledger, archive, aws_env, NOW_MS)
    # Then one object holds seqs 1-5, exactly the items the table held, gzipped JSON
    ((key, data),) = objects(aws_env, chat).items()
    assert key == f"{chat}/1-5.json.gz"
    body = json.loads(gzip.decompress(data))
    assert (body["chatId"], body["firstSeq"], body["lastSeq"]) == (chat, 1, 5)
    assert [int(i["seq"]["N"]) for i in body["items"]] == [1, 2, 3, 4, 5]
    assert [(s.seq, s.created_at) for s in decode(data)] == [(n, before[n]["createdAt"]) for n in range(1, 6)]
    # And it is encrypted at rest
    head = aws_env.s3.head_object(Bucket=aws_env.buckets["archive"], Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    # And only the hot messages are left in the table; META says where the archive ends and
    # lists the chat again from its oldest hot message on
    assert seqs_in_table(aws_env, chat) == [6, 7]
    assert meta(aws_env, chat)["archivedThrough"] == 5
    assert int(meta(aws_env, chat)["hotSince"]) == int(HOT_AT * 1000)
    assert (report.chats, report.ranges, report.archived, report.deleted) == (1, 1, 5, 5)


def test_a_new_device_syncs_archived_and_hot_alike_in_order_with_the_same_frames(
    ledger: Ledger, archive: MessageArchive, poster: RecordingPoster, aws_env: AwsEnv, chat: str
) -> None:
    # Given what a new device of bob's gets of the chat before anything is archived, in pages of 3
    before = all_frames(ledger, poster, "u_bob", chat, limit=3)
    assert [f["seq"] for f in before] == [1, 2, 3, 4, 5, 6, 7]
    # When the old messages are archived
    hourly_run(ledger, archive, aws_env, NOW_MS)
    # Then the same device gets the very same frames, in the same pages (limits and `more` alike)
    assert all_frames(ledger, poster, "u_bob", chat, limit=3) == before
    pages = [[f["seq"] for f in syncing(ledger, poster, "u_bob", {chat: c}, 3)[1]] for c in (0, 3, 6)]
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]
    # And one sync with room for all of it replays archive and table in one run, heads unchanged
    done, frames = syncing(ledger, poster, "u_bob", {chat: 0})
    assert frames == before and done.heads == {chat: 7} and not done.more


def test_a_rerun_is_idempotent_and_a_chat_with_nothing_old_is_not_touched(
    ledger: Ledger, archive: MessageArchive, aws_env: AwsEnv, make_chat: MakeChat, chat: str
) -> None:
    # Given a chat archived once and another chat with only hot messages
    hot = make_chat("u_alice", "u_carol")
    send(ledger, "u_alice", hot, at=HOT_AT)
    hourly_run(ledger, archive, aws_env, NOW_MS)
    stored = objects(aws_env, chat)
    # When the archiver runs again (the index lists neither chat as due now)
    report = hourly_run(ledger, archive, aws_env, NOW_MS)
    # Then nothing is written or deleted
    assert (report.chats, report.archived, report.deleted) == (0, 0, 0)
    assert objects(aws_env, chat) == stored and seqs_in_table(aws_env, chat) == [6, 7]
    # And even when named explicitly, the hot chat is left alone
    again = operators_run(ledger, archive, NOW_MS, [chat, hot])
    assert (again.archived, again.deleted) == (0, 0)
    assert seqs_in_table(aws_env, hot) == [1] and objects(aws_env, hot) == {}
    # And once time moves on, the former hot messages go too (as a range of their own)
    later = hourly_run(ledger, archive, aws_env, NOW_MS + 31 * DAY_MS)
    assert later.archived == 2 + 1
    assert sorted(objects(aws_env, chat)) == [f"{chat}/1-5.json.gz", f"{chat}/6-7.json.gz"]
    assert seqs_in_table(aws_env, chat) == [] and "hotSince" not in meta(aws_env, chat)


class CrashAt(Exception):
    pass


class Crashing(MessageArchive):
    """The functions' archive, dying at one step of a run."""

    def __init__(self, real: MessageArchive, step: str) -> None:
        super().__init__(real.bucket, real.chats_table, real.messages_table, real.ddb, real.s3)
        self.step = step

    def commit(self, archived: ArchiveRange, previous_through: int, now_ms: int) -> None:
        if self.step == "commit":
            raise CrashAt("after the write, before the commit")
        super().commit(archived, previous_through, now_ms)

    def delete_through(self, chat_id: str, through: int, after: int = 0) -> int:
        if self.step == "delete" and through > after:
            # Half the range deleted, then the function dies.
            super().delete_through(chat_id, (after + through) // 2, after)
            raise CrashAt("mid-delete")
        return super().delete_through(chat_id, through, after)


@pytest.mark.parametrize("step", ["commit", "delete"])
def test_a_crash_at_any_step_loses_nothing_and_the_next_run_finishes(
    ledger: Ledger, archive: MessageArchive, poster: RecordingPoster, aws_env: AwsEnv, chat: str, step: str
) -> None:
    # Given what a device gets of the chat
    before = all_frames(ledger, poster, "u_bob", chat, limit=100)
    # When the archiver dies after writing the object and before committing it, or half-way
    # through deleting the committed range
    with pytest.raises(CrashAt):
        hourly_run(ledger, Crashing(archive, step), aws_env, NOW_MS)
    # Then every message is still there for a device, the same frames in the same order
    assert all_frames(ledger, poster, "u_bob", chat, limit=2) == before
    # And no seq was VOIDed on the way
    assert not [m for m in aws_env.messages(chat) if m.get("kind") == "VOID"]
    # And the next run finishes the job: archived once, nothing left over, nothing lost
    hourly_run(ledger, archive, aws_env, NOW_MS)
    assert seqs_in_table(aws_env, chat) == [6, 7]
    assert meta(aws_env, chat)["archivedThrough"] == 5
    assert list(objects(aws_env, chat)) == [f"{chat}/1-5.json.gz"]
    assert all_frames(ledger, poster, "u_bob", chat, limit=3) == before


def test_ranges_are_bounded_in_items_and_bytes(
    ledger: Ledger, archive: MessageArchive, poster: RecordingPoster, aws_env: AwsEnv, make_chat: MakeChat
) -> None:
    # Given a chat of eight old messages, and one of three old messages of 40 KB each
    many = make_chat("u_alice", "u_bob")
    for n in range(8):
        send(ledger, "u_alice", many, at=T0 + n)
    big = make_chat("u_alice", "u_bob")
    for n in range(3):
        send_message(
            ledger,
            caller("u_alice"),
            send_frame(big, data=bytes([n]) * 40_000),
            SEND_POLICY,
            clock=lambda: T0,
        )
    before = {c: all_frames(ledger, poster, "u_bob", c, limit=100) for c in (many, big)}
    # When the archiver runs with ranges of at most 3 items or 120 KB
    bounded = ArchivePolicy(hot_days=30, grace_s=GRACE_S, max_items=3, max_bytes=120_000)
    hourly_run(ledger, archive, aws_env, NOW_MS, bounded)
    # Then the ranges are cut at 3 items, and at 2 of the large messages (about 53 KB of JSON each)
    assert sorted(objects(aws_env, many)) == sorted(f"{many}/{r}.json.gz" for r in ("1-3", "4-6", "7-8"))
    assert sorted(objects(aws_env, big)) == [f"{big}/1-2.json.gz", f"{big}/3-3.json.gz"]
    # And a device reads across the ranges as before
    assert {c: all_frames(ledger, poster, "u_bob", c, limit=2) for c in (many, big)} == before


def test_history_windows_and_voids_apply_across_the_archive(
    ledger: Ledger, archive: MessageArchive, poster: RecordingPoster, aws_env: AwsEnv, make_chat: MakeChat
) -> None:
    # Given a group: 2 messages, a hole (a writer that died), carol added, a message, dave added,
    # dave removed, a message; all old but the last
    chat_id = make_chat("u_alice", "u_bob")
    send(ledger, "u_alice", chat_id, at=T0)
    send(ledger, "u_bob", chat_id, at=T0 + 1)
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None
    hole = ledger.sequencer.reserve(chat_id, chat.members_version, int((T0 + 2) * 1000)).head_seq  # seq 3
    add(ledger, caller("u_alice"), chat_id, ["u_carol"])  # 4
    send(ledger, "u_alice", chat_id, at=T0 + 3)  # 5
    add(ledger, caller("u_alice"), chat_id, ["u_dave"])  # 6
    send(ledger, "u_bob", chat_id, at=T0 + 4)  # 7
    remove(ledger, caller("u_alice"), chat_id, ["u_dave"])  # 8
    send(ledger, "u_alice", chat_id, at=HOT_AT)  # 9
    # When the archiver runs (the hole is VOIDed and archived as such)
    hourly_run(ledger, archive, aws_env, NOW_MS)
    assert meta(aws_env, chat_id)["archivedThrough"] == 8 and seqs_in_table(aws_env, chat_id) == [9]
    # Then each member's new device gets its window, across the archive, the hole as a VOID
    bob = all_frames(ledger, poster, "u_bob", chat_id, limit=2)
    assert [f["seq"] for f in bob] == list(range(1, 10))
    assert bob[hole - 1] == {"type": "VOID", "chatId": chat_id, "seq": hole}
    assert [f["seq"] for f in all_frames(ledger, poster, "u_carol", chat_id, limit=2)] == [4, 5, 6, 7, 8, 9]
    done, dave = syncing(ledger, poster, "u_dave", {chat_id: 0})
    assert [f["seq"] for f in dave] == [6, 7, 8] and done.heads == {chat_id: 8}


def test_a_replay_that_read_archived_through_before_the_archiver_never_voids_what_moved(
    ledger: Ledger, archive: MessageArchive, aws_env: AwsEnv, chat: str
) -> None:
    # Given a sync that read META (archivedThrough 0) before the archiver committed and deleted 1-5
    hourly_run(ledger, archive, aws_env, NOW_MS)
    # When it replays the table from its cursor with what it read
    run = replay_run(ledger, chat, 0, 7, 100, NOW_MS, GRACE_S, archived_through=0)
    # Then the missing seqs come from the archive (META read after the Query says so), never a VOID
    assert [i.seq for i in run.items] == [1, 2, 3, 4, 5, 6, 7]
    assert not [i for i in run.items if isinstance(i, StoredVoid)]
    assert not [m for m in aws_env.messages(chat) if m.get("kind") == "VOID"]


def test_an_old_void_is_archived_and_replayed_as_a_void(
    ledger: Ledger, archive: MessageArchive, poster: RecordingPoster, aws_env: AwsEnv, make_chat: MakeChat
) -> None:
    # Given a chat whose second seq was VOIDed long ago
    chat_id = make_chat("u_alice", "u_bob")
    send(ledger, "u_alice", chat_id, at=T0)
    void = fill_hole(ledger, chat_id)
    send(ledger, "u_alice", chat_id, at=T0 + 1)
    # When archived
    assert hourly_run(ledger, archive, aws_env, NOW_MS).archived == 3
    # Then the VOID is replayed at its seq
    frames = all_frames(ledger, poster, "u_bob", chat_id, limit=10)
    assert [f["type"] for f in frames] == ["MESSAGE", "VOID", "MESSAGE"] and frames[1]["seq"] == void


def ddb_item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's billed storage of an item: names and values (numbers ~ digits/2 + 1), plus the
    100 bytes of overhead every item is billed for."""
    size = 100
    for name, value in item.items():
        size += len(name)
        if isinstance(value, Binary):
            size += len(bytes(value))
        elif isinstance(value, bytes | bytearray):
            size += len(value)
        elif isinstance(value, str):
            size += len(value.encode())
        elif isinstance(value, int | float) or hasattr(value, "as_integer_ratio"):
            size += len(str(value)) // 2 + 1
        elif isinstance(value, list | set | frozenset):
            size += 3 + sum(len(str(v)) + 1 for v in value)
        else:
            size += len(str(value))
    return size


def test_storage_bytes_per_message_hot_and_archived(
    ledger: Ledger, archive: MessageArchive, aws_env: AwsEnv, make_chat: MakeChat, capsys: Any
) -> None:
    # Given a chat of 1,000 old messages of 100 bytes of ciphertext each (random: ciphertext does
    # not compress), the seed's size
    chat_id = make_chat("u_alice", "u_bob")
    for n in range(1000):
        send_message(
            ledger,
            caller("u_alice"),
            send_frame(chat_id, data=os.urandom(100)),
            SEND_POLICY,
            clock=lambda at=T0 + n: at,
        )
    hot = sum(ddb_item_bytes(m) for m in aws_env.messages(chat_id)) / 1000
    # When archived
    hourly_run(ledger, archive, aws_env, NOW_MS)
    # Then an archived message takes a fraction of its hot bytes (the figure docs/COST.md quotes)
    archived = sum(len(data) for data in objects(aws_env, chat_id).values()) / 1000
    with capsys.disabled():
        print(f"\nstorage per 100-byte message: hot {hot:.0f} B (DynamoDB), archived {archived:.0f} B (S3)")
    assert archived < hot / 2


def test_a_receipt_for_an_archived_message_moves_the_watermark_and_tells_nobody(
    ledger: Ledger,
    archive: MessageArchive,
    aws_env: AwsEnv,
    chat: str,
    registry: ConnectionRegistry,
    receipt: Receipting,
) -> None:
    # Given the chat's five old messages archived, and alice (who sent seq 4) online
    ids = {int(m["seq"]): str(m["serverMsgId"]) for m in aws_env.messages(chat)}
    hourly_run(ledger, archive, aws_env, NOW_MS)
    online(registry, "u_alice")
    # When bob, back after weeks away, sends DELIVERED for archived seq 4
    receipt("u_bob", chat, "DELIVERED", msg=ids[4])
    # Then his watermark stands at 4, and alice is not sent a RECEIPT for it
    assert watermark(aws_env, chat, "u_bob")["deliveredUpTo"] == 4
    assert pushed(receipt.poster) == []
    # And a receipt naming hot seq 7 under an id that is not its own is still NOT_FOUND
    with pytest.raises(NotFound):
        receipt("u_bob", chat, "READ", msg="m_7_notitsid")
    assert "readUpTo" not in watermark(aws_env, chat, "u_bob")


def test_the_hourly_run_fans_out_by_shard_pages_and_jobs_of_chats_and_archives_each_once(
    ledger: Ledger, archive: MessageArchive, aws_env: AwsEnv, make_chat: MakeChat
) -> None:
    # Given five chats of one archiveDue shard with an old message each, and one hot chat
    same_shard = [c for c in (f"c_fan{n}" for n in range(2000)) if archive_shard(c) == "7"][:5]
    for chat_id in same_shard:
        make_chat("u_alice", "u_bob", chat_id=chat_id)
        send(ledger, "u_alice", chat_id, at=NOW_S - 40 * 86_400)
    hot = make_chat("u_alice", "u_bob")
    send(ledger, "u_alice", hot, at=HOT_AT)
    # When the hourly run lists 2 chats a page, one page an invocation, into jobs of 2 chats
    small = ArchivePolicy(hot_days=30, grace_s=GRACE_S, listing_page=2, chats_per_job=2)
    report = hourly_run(ledger, archive, aws_env, NOW_MS, small, listing_pages_per_job=1)
    # Then every old chat was listed once (going on from page to page), and archived once
    assert (report.listed, report.chats, report.archived) == (5, 5, 5)
    assert all(list(objects(aws_env, c)) == [f"{c}/1-1.json.gz"] for c in same_shard)
    assert all(seqs_in_table(aws_env, c) == [] for c in same_shard)
    # And the hot chat was neither listed nor touched
    assert seqs_in_table(aws_env, hot) == [1] and objects(aws_env, hot) == {}
    # And the next hourly run finds nothing due
    assert hourly_run(ledger, archive, aws_env, NOW_MS + 3_600_000, small).listed == 0


def test_a_chat_is_listed_a_day_past_the_window_then_archived_up_to_the_window(
    ledger: Ledger, archive: MessageArchive, aws_env: AwsEnv, make_chat: MakeChat
) -> None:
    # Given a chat whose oldest message is 30.5 days old at NOW, and one 29 days old
    chat_id = make_chat("u_alice", "u_bob")
    send(ledger, "u_alice", chat_id, at=NOW_S - 30.5 * 86_400)
    send(ledger, "u_alice", chat_id, at=NOW_S - 29 * 86_400)
    # When the hourly run comes at NOW: not due yet (a chat is listed a day past the window)
    assert hourly_run(ledger, archive, aws_env, NOW_MS).listed == 0
    # Then, a day later, it is listed and what is past the 30-day window goes, the rest stays
    report = hourly_run(ledger, archive, aws_env, NOW_MS + DAY_MS)
    assert (report.listed, report.archived) == (1, 1)
    assert seqs_in_table(aws_env, chat_id) == [2]
