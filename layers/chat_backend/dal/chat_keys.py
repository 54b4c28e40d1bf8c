"""The sort keys of the chats table (pk chatId): one place names every kind of item it holds."""

from __future__ import annotations

META = "META"  # kind, name, headSeq, memberCount, membersVersion, any pending membership change
MEMBER_PREFIX = "MEMBER#"


def member_sk(user_id: str) -> str:
    return f"{MEMBER_PREFIX}{user_id}"


def dedup_sk(user_id: str, client_msg_id: str) -> str:
    """A send's claim and answer: who sent which clientMsgId, and the seq it was given."""
    return f"DEDUP#{user_id}#{client_msg_id}"


def media_sk(media_id: str) -> str:
    return f"MEDIA#{media_id}"
