"""The media bucket: presigned uploads (POST policy) and downloads (GET). The server never reads
or writes the bytes itself; they are encrypted by the client with a key the server never sees.

An upload is tagged `state=pending` by its own POST (the policy requires the tag), and a send that
attaches it re-tags it `state=attached`; the bucket's lifecycle expires what stays pending.
(moto ignores a POST's tagging field: locally uploads are untagged, and nothing expires.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from botocore.exceptions import ClientError

from chat_backend.dal.aws import client
from chat_backend.errors import BlobMissing

PENDING_TAGGING = "<Tagging><TagSet><Tag><Key>state</Key><Value>pending</Value></Tag></TagSet></Tagging>"


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]


class MediaBucket:
    def __init__(self, bucket: str, s3: Any | None = None) -> None:
        self.bucket = bucket
        self.s3 = s3 or client("s3")

    def presign_upload(self, key: str, content_type: str, size: int, expires_s: int) -> PresignedPost:
        """A POST policy for exactly this key, this Content-Type and exactly `size` bytes."""
        post = self.s3.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Fields={"Content-Type": content_type, "tagging": PENDING_TAGGING},
            Conditions=[
                {"Content-Type": content_type},
                {"tagging": PENDING_TAGGING},
                ["content-length-range", size, size],
            ],
            ExpiresIn=expires_s,
        )
        return PresignedPost(url=post["url"], fields={k: str(v) for k, v in post["fields"].items()})

    def presign_download(self, key: str, expires_s: int) -> str:
        """A GET that serves the blob as an opaque attachment, whatever type it was uploaded as."""
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentType": "application/octet-stream",
            "ResponseContentDisposition": "attachment",
        }
        return cast(str, self.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s))

    def mark_attached(self, key: str) -> None:
        """A message carries the blob: tag it so the lifecycle never expires it. BlobMissing when
        nothing was uploaded under `key`."""
        try:
            self.s3.put_object_tagging(
                Bucket=self.bucket,
                Key=key,
                Tagging={"TagSet": [{"Key": "state", "Value": "attached"}]},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise BlobMissing(key) from exc
            raise
