"""The keys of the chats table (pk chatId, sk): one place names every kind of item it holds, and
the id of a pair's direct chat."""

from __future__ import annotations

import hashlib

META = "META"  # kind, name, headSeq, memberCount, membersVersion, any pending membership change
MEMBER_PREFIX = "MEMBER#"  # role, joinedAt, fromSeq (where the member's history window starts)
FORMER_PREFIX = "FORMER#"  # a removed member's last window: fromSeq, toSeq (its removal)


def member_sk(user_id: str) -> str:
    return f"{MEMBER_PREFIX}{user_id}"


def former_sk(user_id: str) -> str:
    return f"{FORMER_PREFIX}{user_id}"


def dedup_sk(user_id: str, client_msg_id: str) -> str:
    """A send's claim and answer: who sent which clientMsgId, and the seq it was given."""
    return f"DEDUP#{user_id}#{client_msg_id}"


def media_sk(media_id: str) -> str:
    return f"MEDIA#{media_id}"


def direct_chat_id(user_a: str, user_b: str) -> str:
    """The same id from either side, so creating a direct chat twice finds the first one."""
    pair = "\n".join(sorted((user_a, user_b)))
    return "d_" + hashlib.sha256(pair.encode()).hexdigest()[:40]
