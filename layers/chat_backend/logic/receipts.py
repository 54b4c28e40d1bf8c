"""Receipts: each member's delivered / read watermark per chat, and telling the senders.

A receipt is stored as a watermark (PROTOCOL.md: "a watermark covers every message with
seq <= upToSeq"); it only moves up, under a condition, so a repeated or out-of-date receipt
changes nothing and is forwarded to nobody. That is the (serverMsgId, userId, type) dedup of
the protocol, by construction. READ implies DELIVERED.

Who hears of it:
- Chats of at most LARGE_GROUP members: one RECEIPT per distinct sender of the newly covered
  messages (not the receipting user's own, not "system" ones), to every connected device of that
  sender, pushed at once by this function (a failed push is retried alone through the delivery
  queue). The sender of the message a per-message receipt names gets the
  per-message form; the other senders get the watermark form.
- Larger groups: no per-member RECEIPT. A summary job per newly covered message of another
  sender goes to the summaries queue; its dedup id holds the message and the current window, so
  there is at most one job per message per window however many members receipt it, and the job
  (delayed by the queue by one window) recounts the watermarks and pushes RECEIPT_SUMMARY.

The watermark is written before anything is pushed or enqueued: should that fail, the receipt
is kept and only the push is lost (the sender still sees it with `receipts`); the other order
could forward a receipt that was never stored. Pushes are a latency optimisation over the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from chat_backend.dal.consent_store import ConsentStore
from chat_backend.dal.delivery_queue import FifoQueue, QueuedMessage
from chat_backend.dal.receipt_store import MessageRef, ReceiptContext, ReceiptStore
from chat_backend.errors import BadRequest, Forbidden, NotFound
from chat_backend.logic.audience import recipients_of
from chat_backend.logic.consent import blockers_of
from chat_backend.logic.push import Pusher, PushResult
from chat_backend.models.client_frames import ReceiptFrame, ReceiptsQueryFrame
from chat_backend.models.common import SYSTEM_SENDER, now_iso, seq_of_server_msg_id
from chat_backend.models.events import Caller
from chat_backend.models.queue_payloads import SummaryJob
from chat_backend.models.records import ChatMeta
from chat_backend.models.server_frames import (
    ReceiptEntry,
    ReceiptNoticeFrame,
    ReceiptsFrame,
    ReceiptSummaryFrame,
)
from chat_backend.wiring import RECEIPT_SUMMARY_WINDOW_S

LARGE_GROUP = 256  # over this many members, senders get RECEIPT_SUMMARY instead of RECEIPTs
# A receipt reads at most this many of the newest messages it newly covers to find whom to tell.
# A watermark jumping further tells the senders among those newest ones only; everything it
# covers is stored all the same and shows in the `receipts` query.
NOTIFY_SCAN_MAX = 100
# Large groups: summary jobs for at most this many of the newest newly covered messages per
# receipt (two SQS calls). Older ones keep their counts in the store (the `receipts` query);
# a member catching up on a long backlog does not flood the queue.
SUMMARY_JOBS_MAX = 20
RECEIPTS_PAGE = 500  # users per RECEIPTS page unless the caller says otherwise


def record_receipt(
    receipts: ReceiptStore,
    consent: ConsentStore,
    pusher: Pusher,
    summaries: FifoQueue,
    caller: Caller,
    frame: ReceiptFrame,
    summary_window_s: float = RECEIPT_SUMMARY_WINDOW_S,
    clock: Callable[[], float] = time.time,
) -> None:
    """Advance the caller's watermark and tell the senders of the messages it newly covers.

    A per-message receipt advances the watermark to that message's seq: the SDK releases messages
    in seq order, so a device holding seq s holds every message before it, and a receipt for s
    says the same of them.
    """
    claimed = seq_of_server_msg_id(frame.server_msg_id) if frame.server_msg_id is not None else None
    ctx = receipts.context(frame.chat_id, caller.user_id, claimed)
    chat = _chat_of_member(ctx, frame.chat_id)
    message: MessageRef | None = None
    if frame.server_msg_id is not None:
        message, seq = _receipted_message(ctx, chat, frame.server_msg_id, claimed)
    else:
        assert frame.up_to_seq is not None  # the frame model enforces one of the two forms
        seq = frame.up_to_seq
        if seq > chat.head_seq:
            raise BadRequest(f"upToSeq {seq} is beyond the chat's latest seq {chat.head_seq}")
        if seq < ctx.window_start:
            return  # nothing of the caller's window: nothing to record

    at = now_iso()
    previous = receipts.advance(frame.chat_id, caller.user_id, frame.type, seq, at, since=ctx.window_start)
    if previous is None:
        return  # already at or past seq: nothing changed, nothing to tell
    # Only what the caller's window holds: a member added later never had the earlier messages.
    previous = max(previous, ctx.window_start - 1)
    # Nobody hears of a message the caller only saw as a VOID, and nobody who blocks the caller
    # hears from it.
    covered = [
        m
        for m in receipts.messages_between(frame.chat_id, previous, seq, NOTIFY_SCAN_MAX)
        if m.sender not in (caller.user_id, SYSTEM_SENDER) and caller.user_id not in m.hidden_from
    ]
    if covered:
        blockers = blockers_of(consent, chat, caller.user_id)
        covered = [m for m in covered if m.sender not in blockers]
    if chat.kind == "group":
        # Read after the watermark moved: a removal that committed since the context read has
        # deleted the caller's watermark, which this receipt may just have re-created; it goes
        # again, and nobody is told. And a sender who has left is told nothing more. (A direct
        # chat's pair never changes; large groups' summaries check their senders in `summarize`.)
        senders = list(dict.fromkeys(m.sender for m in covered)) if chat.member_count <= LARGE_GROUP else []
        members = receipts.members_among(frame.chat_id, [caller.user_id, *senders])
        if caller.user_id not in members:
            receipts.forget(frame.chat_id, caller.user_id)
            return
        covered = [m for m in covered if chat.member_count > LARGE_GROUP or m.sender in members]
    if not covered:
        return
    if chat.member_count > LARGE_GROUP:
        summaries.send(summary_jobs(frame.chat_id, covered[:SUMMARY_JOBS_MAX], clock() // summary_window_s))
        return
    notice = ReceiptNoticeFrame(chat_id=frame.chat_id, user_id=caller.user_id, receipt_type=frame.type, at=at)
    senders = list(dict.fromkeys(m.sender for m in covered))
    devices = pusher.registry.devices_of(senders)
    per_message = [message.sender] if message is not None and message.sender in senders else []
    watermark_form = [s for s in senders if s not in per_message]
    if per_message and message is not None:
        pusher.push(
            notice.model_copy(update={"server_msg_id": message.server_msg_id, "seq": seq}).to_json(),
            recipients_of(per_message, devices, caller.user_id, None),
        )
    if watermark_form:
        pusher.push(
            notice.model_copy(update={"up_to_seq": seq}).to_json(),
            recipients_of(watermark_form, devices, caller.user_id, None),
        )


def summary_jobs(chat_id: str, messages: Sequence[MessageRef], window: float) -> list[QueuedMessage]:
    """One job per message; the dedup id (chat, seq, window number) drops repeats in the window."""
    return [
        QueuedMessage(
            group_id=chat_id,
            dedup_id=f"{chat_id}:{m.seq}:{int(window)}",
            body=SummaryJob(
                chat_id=chat_id, seq=m.seq, server_msg_id=m.server_msg_id, sender=m.sender
            ).model_dump_json(),
        )
        for m in messages
    ]


def summarize(receipts: ReceiptStore, pusher: Pusher, jobs: Sequence[SummaryJob]) -> PushResult:
    """Count delivered (which includes read) and read for each job's message, reading each chat's
    watermarks once for the whole batch, and push RECEIPT_SUMMARY to the sender's connected
    devices. The sender's own watermark is not counted."""
    unique = {(j.chat_id, j.seq): j for j in jobs}
    chat_ids = list(dict.fromkeys(chat_id for chat_id, _ in sorted(unique)))
    devices = pusher.registry.devices_of(sorted({j.sender for j in unique.values()}))
    result = PushResult()
    for chat_id in chat_ids:
        jobs_here = sorted((j for j in unique.values() if j.chat_id == chat_id), key=lambda j: j.seq)
        # A sender who has left (or was removed) since is told nothing more of the chat.
        members = receipts.members_among(chat_id, sorted({j.sender for j in jobs_here}))
        marks = list(receipts.watermarks(chat_id))
        for job in (j for j in jobs_here if j.sender in members):
            # Members added after the message never had it: they do not count.
            others = [w for w in marks if w.user_id != job.sender and w.since <= job.seq]
            delivered = sum(1 for w in others if max(w.delivered_up_to, w.read_up_to) >= job.seq)
            read = sum(1 for w in others if w.read_up_to >= job.seq)
            summary = ReceiptSummaryFrame(
                chat_id=chat_id, server_msg_id=job.server_msg_id, delivered=delivered, read=read
            )
            result += pusher.push(summary.to_json(), recipients_of([job.sender], devices, None, None))
    return result


def list_receipts(
    receipts: ReceiptStore, caller: Caller, frame: ReceiptsQueryFrame, page_size: int = RECEIPTS_PAGE
) -> ReceiptsFrame:
    """Who has the message (DELIVERED) or has read it (READ), a page of `page_size` users in
    userId order. Only the message's sender may ask: receipts are private to the sender.
    `at` is when that user's watermark last moved, which is at or after it covered the message."""
    ctx = receipts.context(frame.chat_id, caller.user_id, seq_of_server_msg_id(frame.server_msg_id))
    _chat_of_member(ctx, frame.chat_id)
    message = _stored_message(ctx, frame.server_msg_id)
    if message.sender != caller.user_id:  # a sender's own message is in its window
        raise Forbidden("only the sender of a message sees its receipts")
    marks, cursor = receipts.covering(frame.chat_id, message.seq, frame.cursor, page_size)
    entries = []
    for w in marks:
        if w.user_id == caller.user_id:
            continue
        read = w.read_up_to >= message.seq
        entries.append(
            ReceiptEntry(
                user_id=w.user_id,
                receipt_type="READ" if read else "DELIVERED",
                at=(w.read_at if read else w.delivered_at) or "",
            )
        )
    return ReceiptsFrame(request_id=frame.request_id, receipts=entries, next=cursor)


def _chat_of_member(ctx: ReceiptContext, chat_id: str) -> ChatMeta:
    """The chat, if the caller is in it; otherwise FORBIDDEN, which says nothing of the chat
    (a chat that does not exist is refused the same way)."""
    if ctx.chat is None or not ctx.is_member:
        raise Forbidden(f"not a member of {chat_id}")
    return ctx.chat


def _receipted_message(
    ctx: ReceiptContext, chat: ChatMeta, server_msg_id: str, claimed: int | None
) -> tuple[MessageRef | None, int]:
    """The message a per-message receipt is for (as `_stored_message` checks it), and its seq. A
    message already archived (docs/PROTOCOL.md, Receipts) is not read back from the archive to
    check its id: its receipt moves the watermark to its seq, as `upToSeq` would, and tells nobody."""
    if claimed is not None and ctx.message is None and ctx.window_start <= claimed <= chat.archived_through:
        return None, claimed
    message = _stored_message(ctx, server_msg_id)
    return message, message.seq


def _stored_message(ctx: ReceiptContext, server_msg_id: str) -> MessageRef:
    """The message stored at the seq the id claims, if it really is that message and the caller's
    history window holds it."""
    message = ctx.message
    if message is None or message.server_msg_id != server_msg_id or message.seq < ctx.window_start:
        raise NotFound(f"no message {server_msg_id}")
    return message
