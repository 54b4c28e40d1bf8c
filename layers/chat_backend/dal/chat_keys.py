"""The keys of the chats table (pk chatId, sk): one place names every kind of item it holds, and
the id of a pair's direct chat."""

from __future__ import annotations

import hashlib

from chat_backend.dal.item_kinds import ItemKind

META = "META"  # kind, name, headSeq, memberCount, membersVersion, any pending membership change
MEMBER = ItemKind("MEMBER#")  # role, joinedAt, fromSeq (where the member's history window starts)
FORMER = ItemKind("FORMER#")  # a removed member's last window: fromSeq, toSeq (its removal)
DEDUP = ItemKind("DEDUP#")  # DEDUP#<user>#<clientMsgId>: a send's claim, and the seq it was given
MEDIA = ItemKind("MEDIA#")  # an announced upload, and the seqs of the messages it is attached to
# (ARCHIVE#<lastSeq>: where an archived range of messages is, in dal/message_archive.py.)

BY_MEMBER = "byMember"  # the sparse index of MEMBER# items by memberUserId: a user's chats


def direct_chat_id(user_a: str, user_b: str) -> str:
    """The same id from either side, so creating a direct chat twice finds the first one."""
    pair = "\n".join(sorted((user_a, user_b)))
    return "d_" + hashlib.sha256(pair.encode()).hexdigest()[:40]
