"""Moving media bytes to and from object storage, with the URLs the server signs (docs/PROTOCOL.md,
Media): the presigned POST of MEDIA_UPLOAD and the presigned GET of MEDIA_URL."""

from __future__ import annotations

import aiohttp

# A transfer may take as long as the file needs, but one that stalls (no connection within 15 s,
# no byte for 60 s) fails instead of hanging for aiohttp's default 5 minutes.
TRANSFER_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)


class MediaTransferError(Exception):
    """Object storage refused an upload or a download (status and its answer)."""


async def post_form(url: str, fields: dict[str, str], data: bytes) -> int:
    """The browser-style upload: the policy fields, then the file (S3 wants it last). The status."""
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", data, filename="blob", content_type=fields["Content-Type"])
    async with aiohttp.ClientSession(timeout=TRANSFER_TIMEOUT) as http, http.post(url, data=form) as resp:
        return resp.status


async def upload(url: str, fields: dict[str, str], data: bytes) -> None:
    status = await post_form(url, fields, data)
    if status not in (200, 201, 204):
        raise MediaTransferError(f"upload refused with HTTP {status}")


async def download(url: str) -> bytes:
    async with aiohttp.ClientSession(timeout=TRANSFER_TIMEOUT) as http, http.get(url) as resp:
        if resp.status != 200:
            raise MediaTransferError(f"download refused with HTTP {resp.status}")
        return await resp.read()
