"""What every model shares: the protocol's limits, id types and how times are written."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

MAX_FRAME_BYTES = 128 * 1024
# What a paged answer fills at most, so that it never goes over MAX_FRAME_BYTES.
ANSWER_BUDGET_BYTES = 120 * 1024
CHATS_PAGE = 500  # chats per CHATS page at most (PROTOCOL.md v1.1)
MAX_CIPHERTEXT_BYTES = 64 * 1024
MAX_SYNC_LIMIT = 1000
DEFAULT_SYNC_LIMIT = 500
MAX_GROUP_MEMBERS = 10_000
MAX_MEDIA_IDS = 32
MAX_MEDIA_BYTES = 100 * 1024 * 1024  # one upload (client-encrypted), 100 MiB

# Seqs and watermarks: JavaScript clients read numbers as doubles, exact up to 2**53 - 1; anything
# longer (a 60-digit upToSeq) is a BAD_REQUEST, never a number DynamoDB refuses mid-request.
MAX_SEQ = 2**53 - 1
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Fanout = Literal["direct", "queued"]
SYSTEM_SENDER = "system"  # `from` of the membership announcements: no user may be called that


def _not_reserved(user_id: str) -> str:
    if user_id == SYSTEM_SENDER:
        raise ValueError(f"{SYSTEM_SENDER!r} is reserved and is no user")
    return user_id


UserId = Annotated[Id, AfterValidator(_not_reserved)]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ReceiptType = Literal["DELIVERED", "READ"]


def iso_at(epoch_s: float) -> str:
    """ISO 8601 UTC with milliseconds, as the protocol writes times."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso_at(time.time())


def epoch_ms(iso: str) -> int:
    """The epoch milliseconds of a time written by `iso_at`."""
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


# --- server message ids -------------------------------------------------------------------------


def new_server_msg_id(seq: int) -> str:
    """`m_<seq>_<random>`: a per-message receipt names a message by this id alone, and the seq in
    it locates the message with one key read (the stored id must match), with no index on ids."""
    return f"m_{seq}_{uuid.uuid4().hex[:24]}"


def seq_of_server_msg_id(server_msg_id: str) -> int | None:
    """The seq a server message id claims (to be checked against the stored message)."""
    parts = server_msg_id.split("_")
    if len(parts) == 3 and parts[0] == "m" and parts[1].isdigit():
        return int(parts[1])
    return None
