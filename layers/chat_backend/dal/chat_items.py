"""The chats table's items as the records the stores hand out and take: META (a chat), MEMBER#
(a member) and FORMER# (a removed member's last window)."""

from __future__ import annotations

from typing import Any

from chat_backend.dal.aws import from_item, to_item
from chat_backend.dal.chat_keys import FORMER, MEMBER, META
from chat_backend.models.records import ChatMeta, PendingChange


def chat_meta(item: dict[str, Any]) -> ChatMeta:
    v = from_item(item)
    change = None
    if "changeToken" in v:
        change = PendingChange(token=v["changeToken"], seq=int(v["changeSeq"]), at_ms=int(v["changeAt"]))
    pair = v.get("pair")
    return ChatMeta(
        chat_id=v["chatId"],
        kind=v["kind"],
        name=v.get("name"),
        head_seq=int(v["headSeq"]),
        member_count=int(v["memberCount"]),
        created_at=v["createdAt"],
        members_version=int(v.get("membersVersion", 0)),
        head_at_ms=int(v["headAt"]) if "headAt" in v else None,
        change=change,
        pair=(pair[0], pair[1]) if isinstance(pair, list) and len(pair) == 2 else None,
        blocked_by=frozenset(v.get("blockedBy", ())),
        engaged=frozenset(v.get("engaged", ())),
        archived_through=int(v.get("archivedThrough", 0)),
    )


def meta_item(meta: ChatMeta, created_by: str) -> dict[str, Any]:
    """A new chat's META (no membership change in flight, nothing archived)."""
    return to_item(
        {
            "chatId": meta.chat_id,
            "sk": META,
            "kind": meta.kind,
            "name": meta.name,
            "headSeq": meta.head_seq,
            "memberCount": meta.member_count,
            "membersVersion": meta.members_version,
            "createdAt": meta.created_at,
            "createdBy": created_by,
            "pair": list(meta.pair) if meta.pair else None,
            "engaged": set(meta.engaged) or None,
            "blockedBy": set(meta.blocked_by) or None,
        }
    )


def member_item(chat_id: str, user_id: str, role: str, joined_at: str, from_seq: int) -> dict[str, Any]:
    # memberUserId feeds the sparse byMember index (a user's chats). fromSeq: the `added`
    # announcement naming the member (1 for the chat's first members), where its window starts.
    return to_item(
        {
            "chatId": chat_id,
            "sk": MEMBER.sk(user_id),
            "memberUserId": user_id,
            "role": role,
            "joinedAt": joined_at,
            "fromSeq": from_seq,
        }
    )


def former_item(chat_id: str, user_id: str, from_seq: int, to_seq: int) -> dict[str, Any]:
    """What a removal leaves of a member: its window, through the announcement that removed it
    (no memberUserId: the byMember index lists only members)."""
    return to_item({"chatId": chat_id, "sk": FORMER.sk(user_id), "fromSeq": from_seq, "toSeq": to_seq})
