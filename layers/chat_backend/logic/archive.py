"""The archiver: messages older than the hot window leave the messages table for the archive
bucket, without ever losing one (docs/ARCHITECTURE.md, "Hot and archived history").

The hourly scheduled run fans out through the archive queue (many invocations at once, none
walking the whole index): one job a shard of the archiveDue index; a shard's job lists the chats
whose oldest item in the table is a day past the window into jobs of 50 chats (going on in a new
job when its time runs out); and a chats job archives each of its chats:
  1. Items at or below META's `archivedThrough` still in the table (a run that died mid-delete)
     are deleted: they are archived already, and no reader takes them from the table.
  2. The next gapless run after `archivedThrough` is read as sync reads it (old holes become
     VOIDs), cut to its prefix older than the window and to ARCHIVE_MAX_ITEMS / ARCHIVE_MAX_BYTES.
  3. The object is written, then read back and compared.
  4. The range item and `archivedThrough` are committed in one transaction, conditional on
     `archivedThrough` being what step 1 read (two archivers never both commit a range).
  5. Only then are the range's items deleted, in batches of 25.
  Steps 2 to 5 repeat while the chat has old items; then META's `hotSince` moves to the oldest
  item left (or goes: nothing left), which is what takes the chat off the index until then.

A crash anywhere loses nothing: before 4 the table still holds everything and readers read it (a
re-run writes the same object again: a range's items never change); after 4 readers take the range
from the archive, whether or not its items are still in the table, and the next run finishes 5
(`hotSince` still lists the chat, as it moves only after the deletes). Sync's replay of the table
never VOIDs a missing seq at or below the `archivedThrough` it reads after its Query
(logic/sync.py), so a delete racing a replay sends it to the archive, not to a VOID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from chat_backend import wiring
from chat_backend.dal.delivery_queue import ArchiveQueue
from chat_backend.dal.message_archive import ArchiveRaced, MessageArchive, record_size
from chat_backend.dal.sequencer import ARCHIVE_SHARDS
from chat_backend.logic.send import Ledger
from chat_backend.logic.sync import replay_run
from chat_backend.models.common import epoch_ms
from chat_backend.models.queue_payloads import ArchiveJob
from chat_backend.models.records import Stored, StoredMessage

DAY_MS = 86_400_000


@dataclass(frozen=True)
class ArchivePolicy:
    hot_days: float  # CHAT_HOT_DAYS
    grace_s: float  # the hole grace: old holes in an archived run are VOIDed first, as sync does
    max_items: int = wiring.ARCHIVE_MAX_ITEMS
    max_bytes: int = wiring.ARCHIVE_MAX_BYTES
    # A chat is listed once its oldest hot item is this far past the window, so an active chat is
    # archived once a day, not at every hourly run: its `hotSince` (a write to the archiveDue
    # index) moves daily. The messages table holds up to hot_days + due_after_days of history.
    due_after_days: float = wiring.ARCHIVE_DUE_AFTER_DAYS
    listing_page: int = 1000  # due chats a shard listing reads a page (20 archive jobs)
    chats_per_job: int = 50  # a few minutes of work for one invocation at most

    def cutoff_ms(self, now_ms: int) -> int:
        """What is older than this is archived."""
        return now_ms - int(self.hot_days * DAY_MS)

    def due_cutoff_ms(self, now_ms: int) -> int:
        """A chat whose oldest hot item is older than this is listed for archiving."""
        return self.cutoff_ms(now_ms) - int(self.due_after_days * DAY_MS)


@dataclass
class ArchiveReport:
    chats: int = 0
    ranges: int = 0
    archived: int = 0  # items written to the archive and committed
    deleted: int = 0  # items deleted from the messages table (incl. a crashed run's leftovers)
    raced: int = 0  # chats another archiver was committing at the same time
    listed: int = 0  # due chats a shard listing put into archive jobs

    def add(self, other: ArchiveReport) -> None:
        self.chats += other.chats
        self.ranges += other.ranges
        self.archived += other.archived
        self.deleted += other.deleted
        self.raced += other.raced
        self.listed += other.listed


def plan_archive(queue: ArchiveQueue, now_ms: int) -> int:
    """The scheduled run: one job a shard of the archiveDue index, each listed by its own
    invocation (run_archive_job), so no single invocation walks the whole index."""
    queue.enqueue([ArchiveJob(now_ms=now_ms, shard=str(shard)) for shard in range(ARCHIVE_SHARDS)])
    return ARCHIVE_SHARDS


def run_archive_job(
    ledger: Ledger,
    archive: MessageArchive,
    queue: ArchiveQueue,
    policy: ArchivePolicy,
    job: ArchiveJob,
    keep_going: Callable[[], bool] = lambda: True,
) -> ArchiveReport:
    """An archive-queue job: archive the chats it names, or list its shard's due chats page by page
    into jobs of `policy.chats_per_job` chats; a listing that runs out of time goes on in a new job
    from where it stopped. Every step is idempotent: SQS may deliver a job twice."""
    if job.shard is None:
        return archive_chats(ledger, archive, policy, job.now_ms, keep_going, job.chat_ids)
    report, start = ArchiveReport(), job.start
    while True:
        chat_ids, start = archive.due_page(
            job.shard, policy.due_cutoff_ms(job.now_ms), policy.listing_page, start
        )
        step = policy.chats_per_job
        batches = [chat_ids[n : n + step] for n in range(0, len(chat_ids), step)]
        queue.enqueue([ArchiveJob(now_ms=job.now_ms, chat_ids=batch) for batch in batches])
        report.listed += len(chat_ids)
        if start is None:
            return report
        if not keep_going():
            queue.enqueue([ArchiveJob(now_ms=job.now_ms, shard=job.shard, start=start)])
            return report


def archive_chats(
    ledger: Ledger,
    archive: MessageArchive,
    policy: ArchivePolicy,
    now_ms: int,
    keep_going: Callable[[], bool],
    chat_ids: Iterable[str],
) -> ArchiveReport:
    """Archive these chats while `keep_going()` says there is time; what is left stays listed in
    the index and is due again at the next run."""
    report = ArchiveReport()
    for chat_id in dict.fromkeys(chat_ids):
        if not keep_going():
            break
        report.add(archive_chat(ledger, archive, chat_id, policy, now_ms, keep_going))
    return report


def archive_chat(
    ledger: Ledger,
    archive: MessageArchive,
    chat_id: str,
    policy: ArchivePolicy,
    now_ms: int,
    keep_going: Callable[[], bool] = lambda: True,
) -> ArchiveReport:
    report = ArchiveReport(chats=1)
    chat = ledger.chats.get_chat(chat_id)
    if chat is None:
        return report
    through = chat.archived_through
    report.deleted += archive.delete_through(chat_id, through)  # 1: a crashed run's leftovers
    cutoff = policy.cutoff_ms(now_ms)
    while keep_going():
        run = replay_run(
            ledger, chat_id, through, chat.head_seq, policy.max_items, now_ms, policy.grace_s, through
        )
        items = bounded(old_prefix(run.items, cutoff), policy.max_bytes)  # 2
        if not items:
            break
        archived = archive.put_range(chat_id, items)  # 3
        try:
            archive.commit(archived, through, now_ms)  # 4
        except ArchiveRaced:
            report.raced += 1
            return report  # the other archiver goes on with this chat (and settles hotSince)
        report.ranges += 1
        report.archived += archived.count
        report.deleted += archive.delete_through(chat_id, archived.last_seq, after=through)  # 5
        through = archived.last_seq
    archive.settle_hot_since(chat_id, through, now_ms)
    return report


def old_prefix(items: list[Stored], cutoff_ms: int) -> list[Stored]:
    """The run's items up to its last one stored before `cutoff_ms`, stopping at the first message
    stored after it (a VOID filled just now between old messages goes with them)."""
    last = -1
    for n, item in enumerate(items):
        if epoch_ms(item.created_at) < cutoff_ms:
            last = n
        elif isinstance(item, StoredMessage):
            break
    return items[: last + 1]


def bounded(items: list[Stored], max_bytes: int) -> list[Stored]:
    """The longest prefix whose records fit in `max_bytes` (always at least one item)."""
    total = 0
    for n, item in enumerate(items):
        total += record_size(item)
        if total > max_bytes and n > 0:
            return items[:n]
    return items
