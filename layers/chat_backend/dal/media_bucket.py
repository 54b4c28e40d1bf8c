"""The media bucket: presigned uploads (POST policy) and downloads (GET). The server never reads
or writes the bytes itself; they are encrypted by the client with a key the server never sees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from chat_backend.dal.aws import client


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
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", size, size],
            ],
            ExpiresIn=expires_s,
        )
        return PresignedPost(url=post["url"], fields={k: str(v) for k, v in post["fields"].items()})

    def presign_download(self, key: str, expires_s: int) -> str:
        return cast(
            str,
            self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
            ),
        )
