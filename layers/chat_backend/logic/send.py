"""send: give the message the chat's next seq and store it there, exactly once per clientMsgId.

Sequencing v2 (docs/ARCHITECTURE.md), one writer never waiting on another:
1. One consistent read: the chat (head, membership version, any change in flight), the sender's
   membership, any claim on this clientMsgId, the attached media. Not a member: FORBIDDEN;
   unknown media: NOT_FOUND; a finished claim: the stored ACK. Nothing is written for any of these.
   A warm function that saw this sender in this chat before skips the read (`MembershipCache`):
   step 3's condition checks the membership version it saw, and a miss comes back here.
2. Claim the clientMsgId (a lease). A concurrent duplicate loses here and waits for the winner's
   answer, so duplicates never reserve a seq.
3. Reserve seq n: one UpdateItem on the counter, conditional on the membership checked in 1
   (else read again: a removed member is refused, never sequenced after its removal).
4. Record n in the claim, under the lease (so a retry can tell "stored at n" from "died").
5. Put the message at n if n is free. A VOID got there first (this writer was too slow): back to 3.
Four single-item writes (1 WCU each up to 1 KB) whatever the contention; a message with media
puts it in a transaction with the media items instead (2 WCU per item). A known sender's send is
those four writes and nothing else before the push.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from chat_backend.backoff import Backoff, Sleep
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.media_bucket import MediaBucket
from chat_backend.dal.message_archive import MessageArchive
from chat_backend.dal.message_store import MessageStore
from chat_backend.dal.send_store import SendClaim, SendContext, SendStore
from chat_backend.dal.sequencer import Sequencer
from chat_backend.errors import (
    BlobMissing,
    ChatError,
    Forbidden,
    MediaNotInChat,
    MembershipMoved,
    NotFound,
    RateLimited,
    SeqTaken,
)
from chat_backend.logic import holes
from chat_backend.logic.audience import MemberListCache, MembershipCache, members_for_send
from chat_backend.models.client_frames import SendFrame
from chat_backend.models.common import Fanout, iso_at, new_server_msg_id
from chat_backend.models.events import Caller
from chat_backend.models.records import ChatMeta, SendRecord, StoredMessage, media_key
from chat_backend.models.server_frames import AckFrame

MAX_ATTEMPTS = 12  # membership changes or lost seqs in a row before giving up (RATE_LIMITED)
# How a send waits for a membership change in flight to commit, or for a duplicate's claimant.
POLL = Backoff(first_s=0.01, max_s=0.2, jitter=False)


@dataclass(frozen=True)
class SendPolicy:
    dedup_ttl_s: int  # how long a claim answers retries
    lease_s: float = 5.0  # a claim's owner has this long before a duplicate may take it over
    hole_grace_s: float = 5.0  # an unwritten seq (or membership change) this old is abandoned
    direct_push_max_members: int = 256  # chats up to this size are pushed by the send itself
    wait_s: float = 8.0  # how long a duplicate waits for the claimant (over the lease: it resolves)


@dataclass(frozen=True)
class Ledger:
    """What a send reads and writes."""

    chats: ChatStore
    sends: SendStore
    sequencer: Sequencer
    messages: MessageStore
    member_lists: MemberListCache
    memberships: MembershipCache
    media: MediaBucket | None = None  # where an attached blob is marked kept (the send function)
    archive: MessageArchive | None = None  # the history past the hot window (sync, the archiver)


@dataclass(frozen=True)
class Sent:
    ack: AckFrame
    message: StoredMessage  # as stored (a duplicate gets the stored one)
    audience: list[str] | None  # its members, when this call read them (a direct, new message)


Clock = Callable[[], float]


def send_message(
    ledger: Ledger,
    caller: Caller,
    frame: SendFrame,
    policy: SendPolicy,
    clock: Clock = time.time,
    sleep: Sleep = time.sleep,
) -> Sent:
    return _Send(ledger, caller, frame, policy, clock, sleep).run()


class _Send:
    """One send invocation: the steps of the module docstring, and the duplicate's wait."""

    def __init__(
        self, ledger: Ledger, caller: Caller, frame: SendFrame, policy: SendPolicy, clock: Clock, sleep: Sleep
    ) -> None:
        self.ledger, self.caller, self.frame, self.policy = ledger, caller, frame, policy
        self.clock, self.sleep = clock, sleep
        self.deadline = clock() + policy.wait_s

    def run(self) -> Sent:
        chat = self.ledger.memberships.get(self.frame.chat_id, self.caller.user_id)
        if chat is None or self.frame.media_ids:
            context = self._context()
            if context.claim is not None:
                return self._await_answer(context.claim)
            chat = context.chat
        lease = uuid.uuid4().hex
        existing = self.ledger.sends.claim(
            self.frame.chat_id,
            self.caller.user_id,
            self.frame.client_msg_id,
            lease,
            self._now_ms() + int(self.policy.lease_s * 1000),
            int(self.clock()) + self.policy.dedup_ttl_s,
        )
        if existing is not None:
            return self._await_answer(existing)
        return self._sequence(chat, lease)

    # --- the owner ---------------------------------------------------------------------------------

    def _sequence(self, chat: ChatMeta | None, lease: str) -> Sent:
        """Steps 3 to 5 under our claim; a refusal on the way releases the claim."""
        try:
            return self._sequence_claimed(chat, lease)
        except ChatError:
            self.ledger.sends.release(
                self.frame.chat_id, self.caller.user_id, self.frame.client_msg_id, lease
            )
            raise

    def _sequence_claimed(self, chat: ChatMeta | None, lease: str) -> Sent:
        if self.frame.media_ids and self.ledger.media is not None:
            # Before the message exists: a blob it carries must never expire as unattached.
            for media_id in self.frame.media_ids:
                try:
                    self.ledger.media.mark_attached(media_key(self.frame.chat_id, media_id))
                except BlobMissing as exc:
                    raise NotFound(f"media {media_id} was announced but never uploaded") from exc
        for _ in range(MAX_ATTEMPTS):
            settled = self._settled(chat)
            direct = settled.member_count <= self.policy.direct_push_max_members
            audience = (
                members_for_send(self.ledger.chats, self.ledger.member_lists, settled) if direct else None
            )
            try:
                reserved = self.ledger.sequencer.reserve(
                    settled.chat_id,
                    settled.members_version,
                    self._now_ms(),
                    engage=self.caller.user_id if settled.kind == "direct" else None,
                )
            except MembershipMoved:
                self.ledger.memberships.forget(self.frame.chat_id, self.caller.user_id)
                chat = self._context().chat  # a removed sender is refused here
                continue
            seq = reserved.head_seq
            # The reservation proved the membership (and member list) read at this version holds.
            self.ledger.memberships.put(self.caller.user_id, reserved)
            if audience is not None:
                self.ledger.member_lists.put(settled.chat_id, settled.members_version, audience)
            # A direct chat's member who blocks the sender gets a VOID at this seq (the reservation
            # returned the chat as it is now: a block made before it is seen).
            hidden = reserved.blocked_by - {self.caller.user_id}
            message = self._message(seq, settled, "direct" if direct else "queued", hidden)
            record = SendRecord(server_msg_id=message.server_msg_id, seq=seq, created_at=message.created_at)
            if not self.ledger.sends.record(
                self.frame.chat_id, self.caller.user_id, self.frame.client_msg_id, lease, record
            ):
                # Our lease ran out and a duplicate took the claim over: its answer is ours.
                claim = self._claim()
                if claim is None:
                    raise RateLimited("send was taken over and abandoned; retry", 200)
                return self._await_answer(claim)
            try:
                self.ledger.messages.put_message(message)
            except SeqTaken:
                chat = settled
                continue  # filled with a VOID while we were slow: take the next seq
            except MediaNotInChat as exc:  # checked in step 1; only a media item vanishing gets here
                raise NotFound(f"a mediaId of this message is not media of {self.frame.chat_id}") from exc
            return Sent(ack=self._ack(record), message=message, audience=audience)
        raise RateLimited(f"chat {self.frame.chat_id} kept changing; retry with the same clientMsgId", 200)

    def _settled(self, chat: ChatMeta | None) -> ChatMeta:
        """The chat with no membership change in flight: wait for one to commit, or abandon it
        after the hole grace (its writer died). Membership is checked again after either."""
        waits = 0
        give_up = self.clock() + self.policy.hole_grace_s + self.policy.wait_s
        while True:
            if chat is None:
                raise Forbidden(f"not a member of {self.frame.chat_id}")
            if chat.change is None:
                return chat
            if self.clock() > give_up:  # the change can be neither waited out nor ended: later
                raise RateLimited(f"chat {self.frame.chat_id} is changing its members; retry", 1000)
            if not holes.abandon_stale_change(
                self.ledger.messages, self.ledger.sequencer, chat, self._now_ms(), self.policy.hole_grace_s
            ):
                POLL.pause(waits, self.sleep)
                waits += 1
            chat = self._context().chat

    # --- a duplicate -------------------------------------------------------------------------------

    def _await_answer(self, claim: SendClaim | None) -> Sent:
        """Someone holds the claim on this clientMsgId: return its answer once the message is
        stored, or take the claim over once its lease has run out (the claimant died or stalled)."""
        waits = 0
        while True:
            if claim is None:  # the claimant was refused and let go: try as a new send
                return self.run()
            found = None
            if claim.record is not None:
                found = self.ledger.messages.at(self.frame.chat_id, claim.record.seq)
                if isinstance(found, StoredMessage) and found.server_msg_id == claim.record.server_msg_id:
                    return Sent(ack=self._ack(claim.record), message=found, audience=None)
            if claim.lease_until_ms <= self._now_ms():
                taken = self._take_over(claim, found is None)
                if taken is not None:
                    return taken
            elif self.clock() >= self.deadline:
                wait_ms = max(1, claim.lease_until_ms - self._now_ms())
                raise RateLimited("this clientMsgId is being sent; retry with the same clientMsgId", wait_ms)
            else:
                POLL.pause(waits, self.sleep)
                waits += 1
            claim = self._claim()

    def _take_over(self, claim: SendClaim, seq_empty: bool) -> Sent | None:
        """Make the claim's recorded seq unwritable (a VOID, if nothing is there), then take the
        claim, only if it is still as seen. None: it changed meanwhile (look again)."""
        if claim.record is not None and seq_empty:
            chat = self._context().chat
            if chat is None:
                raise Forbidden(f"not a member of {self.frame.chat_id}")
            found = holes.fill_hole(
                self.ledger.messages, self.ledger.sequencer, chat, claim.record.seq, self._now_ms()
            )
            if isinstance(found, StoredMessage):
                return None  # it was stored after all: the next look answers it
        lease = uuid.uuid4().hex
        until = self._now_ms() + int(self.policy.lease_s * 1000)
        if not self.ledger.sends.take_over(
            self.frame.chat_id, self.caller.user_id, self.frame.client_msg_id, claim, lease, until
        ):
            return None
        return self._sequence(self._context().chat, lease)

    # --- reads and values --------------------------------------------------------------------------

    def _context(self) -> SendContext:
        """Step 1: a refused send is refused here, before it writes anything."""
        context = self.ledger.sends.context(
            self.frame.chat_id, self.caller.user_id, self.frame.client_msg_id, list(self.frame.media_ids)
        )
        if context.chat is None or context.role is None:
            raise Forbidden(f"not a member of {self.frame.chat_id}")
        if context.missing_media:
            # Unknown, or another chat's: either way nothing is stored.
            raise NotFound(f"a mediaId of this message is not media of {self.frame.chat_id}")
        return context

    def _claim(self) -> SendClaim | None:
        return self.ledger.sends.claim_of(self.frame.chat_id, self.caller.user_id, self.frame.client_msg_id)

    def _message(
        self, seq: int, chat: ChatMeta, fanout: Fanout, hidden_from: frozenset[str]
    ) -> StoredMessage:
        # createdAt is taken after the reservation: it bounds the age of any hole below this seq.
        return StoredMessage(
            chat_id=chat.chat_id,
            seq=seq,
            server_msg_id=new_server_msg_id(seq),
            sender=self.caller.user_id,
            sender_device=self.caller.device_id,
            ciphertext=self.frame.ciphertext_bytes,
            media_ids=list(self.frame.media_ids),
            created_at=iso_at(self.clock()),
            members_version=chat.members_version,
            fanout=fanout,
            hidden_from=hidden_from,
        )

    def _ack(self, record: SendRecord) -> AckFrame:
        return AckFrame(
            client_msg_id=self.frame.client_msg_id,
            chat_id=self.frame.chat_id,
            server_msg_id=record.server_msg_id,
            seq=record.seq,
            created_at=record.created_at,
        )

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)
