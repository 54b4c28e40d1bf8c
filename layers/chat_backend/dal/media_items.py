"""A chat's media announcements: MEDIA# items of the chats table, one per upload (uploader, type,
size), marked attached, with the seqs of the messages carrying it, by the send that attaches it
(dal/message_store.py). The bytes are in the media bucket (dal/media_bucket.py)."""

from __future__ import annotations

from typing import Any

from chat_backend.dal.aws import av, from_item, to_item
from chat_backend.dal.chat_keys import MEDIA
from chat_backend.dal.conditional import ConditionFailed, put_new
from chat_backend.errors import MediaExists
from chat_backend.models.records import StoredMedia

# The announcement's own fields, as the MEDIA# item names them (written by `put`, read by `get`).
ANNOUNCED = {"uploader": "uploader", "content_type": "contentType", "size": "size", "created_at": "createdAt"}


class MediaItems:
    def __init__(self, chats_table: str, ddb: Any) -> None:
        self.chats_table = chats_table
        self.ddb = ddb

    def put(self, media: StoredMedia) -> None:
        """Announce an upload, not yet attached to any message; MediaExists if the id is taken."""
        values = {attribute: getattr(media, field) for field, attribute in ANNOUNCED.items()}
        item = to_item(
            {
                "chatId": media.chat_id,
                "sk": MEDIA.sk(media.media_id),
                **values,
                "attached": False,
                "expiresAt": media.expires_at,  # TTL: an upload never attached goes (removed on attach)
            }
        )
        try:
            put_new(self.ddb, self.chats_table, item)
        except ConditionFailed as exc:
            raise MediaExists(media.media_id) from exc

    def get(self, chat_id: str, media_id: str) -> StoredMedia | None:
        resp = self.ddb.get_item(
            TableName=self.chats_table,
            Key={"chatId": av(chat_id), "sk": av(MEDIA.sk(media_id))},
            ConsistentRead=True,
        )
        if "Item" not in resp:
            return None
        v = from_item(resp["Item"])
        return StoredMedia(
            chat_id=chat_id,
            media_id=media_id,
            **{field: v[attribute] for field, attribute in ANNOUNCED.items()},
            attached=bool(v.get("attached", False)),
            attached_seqs=frozenset(int(s) for s in v.get("attachedSeqs", ())),
        )
