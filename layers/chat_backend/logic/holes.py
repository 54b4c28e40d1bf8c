"""Seqs that were reserved and never written: found after a grace period, filled with a VOID.

A writer reserves seq n (one UpdateItem on the chat's counter), then stores its message at n with
a conditional put. Should it die in between, n stays empty below the head. Whoever finds such a
hole once it is older than the grace (sync, or a send waiting on an abandoned membership change)
puts a VOID there, also conditionally: a writer that was merely slow then finds its seq taken and
reserves another one, so the message is stored exactly once and every seq holds exactly one item.

How old a hole is: every later item was stored after the hole's seq was reserved (seqs are
handed out in order), so the first item after it bounds its age; with none after it, the chat's
`headAt` (when the head last moved) does.
"""

from __future__ import annotations

from chat_backend.dal.message_store import MessageStore
from chat_backend.dal.sequencer import Sequencer
from chat_backend.models.common import iso_at
from chat_backend.models.records import ChatMeta, Stored, StoredVoid


def is_old(reserved_before_ms: int | None, now_ms: int, grace_s: float) -> bool:
    """A hole reserved before `reserved_before_ms` is past the grace at `now_ms` (unknown: not)."""
    return reserved_before_ms is not None and now_ms - reserved_before_ms >= grace_s * 1000


def fill_hole(messages: MessageStore, sequencer: Sequencer, chat: ChatMeta, seq: int, now_ms: int) -> Stored:
    """A VOID at `seq` unless something got there first; returns what the seq holds. A membership
    change whose seq this was can then never commit, so it stops being the change in flight.

    The VOID is told to the members of the seq's own time (the version of the item before it), so
    a member removed later, whose history still reaches this seq, is not left waiting for it."""
    version = messages.version_before(chat.chat_id, seq)
    found = messages.fill_void(
        StoredVoid(chat_id=chat.chat_id, seq=seq, created_at=iso_at(now_ms / 1000), members_version=version)
    )
    if isinstance(found, StoredVoid) and chat.change is not None and chat.change.seq == seq:
        sequencer.clear_change(chat.chat_id, chat.change.token)
    return found


def abandon_stale_change(
    messages: MessageStore, sequencer: Sequencer, chat: ChatMeta, now_ms: int, grace_s: float
) -> bool:
    """End the chat's change in flight if it began more than the grace ago (its writer died).
    Returns whether there was such a change (then read the chat again)."""
    if chat.change is None or not is_old(chat.change.at_ms, now_ms, grace_s):
        return False
    fill_hole(messages, sequencer, chat, chat.change.seq, now_ms)
    return True
