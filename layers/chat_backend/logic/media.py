"""mediaUpload / mediaDownload: presigned URLs for the client-encrypted blobs of a chat.

Each user uploads at most `wiring.MEDIA_UPLOAD_QUOTA_MIB` (2 GiB a day, a rate-limit bucket of
MiB): past it, RATE_LIMITED says when enough has refilled. Downloads are served as attachments
(`application/octet-stream`, `Content-Disposition: attachment`): a browser never renders a blob.

A blob belongs to one chat: its MEDIA# item lives under that chat and its key starts with the
chatId. A send attaches it (checked inside the send's transaction); only then do members get a
download URL, and only those whose history window holds a message it is attached to (a member
added later does not get the media of earlier messages; a removed member keeps those of its
window). Unknown, unattached, out-of-window and other chats' media all answer the same NOT_FOUND.

A download URL is a presigned S3 GET, or a CloudFront signed URL where the stack has the media CDN
(`dal/media_cdn.py`): either way a URL to GET for 15 minutes, served as an attachment.
"""

from __future__ import annotations

import time
import uuid
from typing import Protocol

from chat_backend import wiring
from chat_backend.dal.chat_store import ChatStore
from chat_backend.dal.media_bucket import MediaBucket
from chat_backend.errors import Forbidden, NotFound, TooLarge
from chat_backend.logic.rate_limits import Party, RateLimiter
from chat_backend.models.client_frames import MediaDownloadFrame, MediaUploadFrame
from chat_backend.models.common import MAX_MEDIA_BYTES, iso_at, now_iso
from chat_backend.models.events import Caller
from chat_backend.models.records import StoredMedia
from chat_backend.models.server_frames import MediaUploadAnswer, MediaUrlFrame
from chat_backend.wiring import MEDIA_UPLOAD_QUOTA_MIB

URL_TTL_S = 15 * 60
# An upload no message attached is forgotten after this (its MEDIA# item by TTL, its blob by the
# bucket's lifecycle on the `state=pending` tag).
UNATTACHED_TTL_S = (wiring.bucket("media").expire_pending_after_days or 2) * 86_400
MIB = 1024 * 1024


class DownloadLinks(Protocol):
    """What signs a download: the bucket (presigned GET) or the media CDN (signed URL)."""

    def presign_download(self, key: str, expires_s: int) -> str: ...


def new_media_id() -> str:
    return f"md_{uuid.uuid4().hex}"


def upload_media(
    store: ChatStore, bucket: MediaBucket, limiter: RateLimiter, caller: Caller, frame: MediaUploadFrame
) -> MediaUploadAnswer:
    if frame.size > MAX_MEDIA_BYTES:
        raise TooLarge(f"media is {frame.size} bytes; at most {MAX_MEDIA_BYTES}")
    if store.members.role_of(frame.chat_id, caller.user_id) is None:
        raise Forbidden(f"not a member of {frame.chat_id}")
    mib = -(-frame.size // MIB)
    limiter.take(f"u#{caller.user_id}", "media-bytes", [Party("mib", MEDIA_UPLOAD_QUOTA_MIB, mib)])
    # A fresh 128-bit id: media.put still refuses (MediaExists) rather than overwrite an item.
    media = StoredMedia(
        chat_id=frame.chat_id,
        media_id=new_media_id(),
        uploader=caller.user_id,
        content_type=frame.content_type,
        size=frame.size,
        created_at=now_iso(),
        expires_at=int(time.time()) + UNATTACHED_TTL_S,
    )
    store.media.put(media)
    expires_at = iso_at(time.time() + URL_TTL_S)
    post = bucket.presign_upload(media.key, media.content_type, media.size, URL_TTL_S)
    return MediaUploadAnswer(
        request_id=frame.request_id,
        media_id=media.media_id,
        url=post.url,
        fields=post.fields,
        expires_at=expires_at,
    )


def download_media(
    store: ChatStore, links: DownloadLinks, caller: Caller, frame: MediaDownloadFrame
) -> MediaUrlFrame:
    window = store.heads.window(frame.chat_id, caller.user_id)
    if window is None:
        raise Forbidden(f"not a member of {frame.chat_id}")
    media = store.media.get(frame.chat_id, frame.media_id)
    if media is None or not any(window.holds(seq) for seq in media.attached_seqs):
        raise NotFound(f"no media {frame.media_id} in {frame.chat_id}")
    expires_at = iso_at(time.time() + URL_TTL_S)
    url = links.presign_download(media.key, URL_TTL_S)
    return MediaUrlFrame(request_id=frame.request_id, media_id=frame.media_id, url=url, expires_at=expires_at)
