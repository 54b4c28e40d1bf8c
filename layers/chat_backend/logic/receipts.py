"""Receipts: each member's delivered / read watermark per chat, and telling the senders.

A receipt is stored as a watermark (PROTOCOL.md: "a watermark covers every message with
seq <= upToSeq"); it only moves up, under a condition, so a repeated or out-of-date receipt
changes nothing and is forwarded to nobody. That is the (serverMsgId, userId, type) dedup of
the protocol, by construction. READ implies DELIVERED.

Who hears of it:
- Chats of at most LARGE_GROUP members: one RECEIPT per distinct sender of the newly covered
  messages (not the receipting user's own, not "system" ones), to every connected device of that
  sender, through the delivery queue in the chat's FIFO group (so it never overtakes the MESSAGE
  on the sender's other devices). The sender of the message a per-message receipt names gets the
  per-message form; the other senders get the watermark form.
- Larger groups: no per-member RECEIPT. A summary job per newly covered message of another
  sender goes to the summaries queue; its dedup id holds the message and the current window, so
  there is at most one job per message per window however many members receipt it, and the job
  (delayed by the queue by one window) recounts the watermarks and pushes RECEIPT_SUMMARY.

The watermark is written before anything is enqueued: should the enqueue fail, the receipt is
kept and only the push is lost (the sender still sees it with `receipts`); the other order could
forward a receipt that was never stored. Pushes are a latency optimisation over the store.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence

from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue, Envelope, FifoQueue, QueuedMessage
from chat_backend.dal.receipt_store import MessageRef, ReceiptContext, ReceiptStore
from chat_backend.errors import BadRequest, Forbidden, NotFound
from chat_backend.logic.fanout import envelopes_for, recipients_of
from chat_backend.logic.members import SYSTEM_SENDER
from chat_backend.logic.send import seq_of_server_msg_id
from chat_backend.models import (
    Caller,
    ChatMeta,
    ReceiptEntry,
    ReceiptFrame,
    ReceiptNoticeFrame,
    ReceiptsFrame,
    ReceiptsQueryFrame,
    ReceiptSummaryFrame,
    SummaryJob,
    now_iso,
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
NO_ONE = ""  # as recipients_of's excluded sender: no user id is empty, so nobody is left out
# SQS deduplication ids hold at most 128 characters; envelopes_for appends ":<form>:<chunk>".
DEDUP_ID_MAX = 100


def record_receipt(
    receipts: ReceiptStore,
    registry: ConnectionRegistry,
    delivery: DeliveryQueue,
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
        message = _stored_message(ctx, frame.server_msg_id)
        seq = message.seq
    else:
        assert frame.up_to_seq is not None  # the frame model enforces one of the two forms
        seq = frame.up_to_seq
        if seq > chat.head_seq:
            raise BadRequest(f"upToSeq {seq} is beyond the chat's latest seq {chat.head_seq}")

    at = now_iso()
    previous = receipts.advance(frame.chat_id, caller.user_id, frame.type, seq, at)
    if previous is None:
        return  # already at or past seq: nothing changed, nothing to tell
    covered = [
        m
        for m in receipts.messages_between(frame.chat_id, previous, seq, NOTIFY_SCAN_MAX)
        if m.sender not in (caller.user_id, SYSTEM_SENDER)
    ]
    if not covered:
        return
    if chat.member_count > LARGE_GROUP:
        summaries.send(summary_jobs(frame.chat_id, covered[:SUMMARY_JOBS_MAX], clock() // summary_window_s))
        return
    notice = ReceiptNoticeFrame(chat_id=frame.chat_id, user_id=caller.user_id, receipt_type=frame.type, at=at)
    senders = list(dict.fromkeys(m.sender for m in covered))
    devices = registry.devices_of(senders)
    dedup = receipt_dedup_id(frame.chat_id, caller.user_id, frame.type, seq)
    per_message = [message.sender] if message is not None and message.sender in senders else []
    watermark_form = [s for s in senders if s not in per_message]
    envelopes: list[Envelope] = []
    if per_message and message is not None:
        envelopes += envelopes_for(
            frame.chat_id,
            f"{dedup}:m",
            notice.model_copy(update={"server_msg_id": message.server_msg_id, "seq": seq}).to_json(),
            recipients_of(per_message, devices, caller.user_id, None),
        )
    if watermark_form:
        envelopes += envelopes_for(
            frame.chat_id,
            f"{dedup}:w",
            notice.model_copy(update={"up_to_seq": seq}).to_json(),
            recipients_of(watermark_form, devices, caller.user_id, None),
        )
    delivery.enqueue(envelopes)


def receipt_dedup_id(chat_id: str, user_id: str, receipt_type: str, seq: int) -> str:
    """`receipt:{chat}:{user}:{type}:{seq}`: the same receipt replayed is dropped by SQS. Two ids of
    up to 64 characters can make it too long for SQS; then it is a digest of the same key."""
    key = f"receipt:{chat_id}:{user_id}:{receipt_type}:{seq}"
    if len(key) <= DEDUP_ID_MAX:
        return key
    return f"receipt:{hashlib.sha256(key.encode()).hexdigest()}"


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


def summarize(
    receipts: ReceiptStore, registry: ConnectionRegistry, delivery: DeliveryQueue, jobs: Sequence[SummaryJob]
) -> int:
    """Count delivered (which includes read) and read for each job's message, reading each chat's
    watermarks once for the whole batch, and push RECEIPT_SUMMARY to the sender's connected
    devices. The sender's own watermark is not counted. Returns how many envelopes it took."""
    unique = {(j.chat_id, j.seq): j for j in jobs}
    chat_ids = list(dict.fromkeys(chat_id for chat_id, _ in sorted(unique)))
    devices = registry.devices_of(sorted({j.sender for j in unique.values()}))
    envelopes: list[Envelope] = []
    for chat_id in chat_ids:
        marks = list(receipts.watermarks(chat_id))
        for job in sorted((j for j in unique.values() if j.chat_id == chat_id), key=lambda j: j.seq):
            others = [w for w in marks if w.user_id != job.sender]
            delivered = sum(1 for w in others if max(w.delivered_up_to, w.read_up_to) >= job.seq)
            read = sum(1 for w in others if w.read_up_to >= job.seq)
            summary = ReceiptSummaryFrame(
                chat_id=chat_id, server_msg_id=job.server_msg_id, delivered=delivered, read=read
            )
            # Same counts, same dedup id: a retried batch or an unchanged recount pushes nothing twice.
            envelopes += envelopes_for(
                chat_id,
                f"summary:{chat_id}:{job.seq}:{delivered}:{read}",
                summary.to_json(),
                recipients_of([job.sender], devices, NO_ONE, None),
            )
    delivery.enqueue(envelopes)
    return len(envelopes)


def list_receipts(
    receipts: ReceiptStore, caller: Caller, frame: ReceiptsQueryFrame, page_size: int = RECEIPTS_PAGE
) -> ReceiptsFrame:
    """Who has the message (DELIVERED) or has read it (READ), a page of `page_size` users in
    userId order. Only the message's sender may ask: receipts are private to the sender.
    `at` is when that user's watermark last moved, which is at or after it covered the message."""
    ctx = receipts.context(frame.chat_id, caller.user_id, seq_of_server_msg_id(frame.server_msg_id))
    _chat_of_member(ctx, frame.chat_id)
    message = _stored_message(ctx, frame.server_msg_id)
    if message.sender != caller.user_id:
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


def _stored_message(ctx: ReceiptContext, server_msg_id: str) -> MessageRef:
    """The message stored at the seq the id claims, if it really is that message."""
    if ctx.message is None or ctx.message.server_msg_id != server_msg_id:
        raise NotFound(f"no message {server_msg_id}")
    return ctx.message
