"""Media over the local stack: a presigned POST to the emulated S3 (moto), a message carrying the
mediaId, and a presigned GET that only members of that chat get."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from chat_client import ChatServerError
from chat_client.media import post_form

Connect = Callable[..., Any]


async def get_download(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


async def test_uploaded_media_reaches_the_other_member_through_a_message_and_a_download_url(
    connect: Connect, new_user: Callable[[str], str]
) -> None:
    # Given alice and bob in a direct chat, and mallory outside it
    alice_id, bob_id, mallory_id = new_user("alice"), new_user("bob"), new_user("mallory")
    alice, bob, mallory = await connect(alice_id), await connect(bob_id), await connect(mallory_id)
    chat_id = (await alice.create_chat("direct", [bob_id]))["chatId"]
    blob = os.urandom(3000)  # stands in for the client-encrypted bytes
    # When alice announces the upload and posts the bytes with the presigned form
    upload = await alice.request(
        {"action": "mediaUpload", "chatId": chat_id, "contentType": "image/png", "size": len(blob)}
    )
    assert upload["type"] == "MEDIA_UPLOAD" and upload["mediaId"].startswith("md_")
    assert upload["fields"]["key"] == f"{chat_id}/{upload['mediaId']}"
    assert await post_form(upload["url"], upload["fields"], blob) in (200, 201, 204)
    # And sends a message carrying its mediaId
    ack = await alice.send(chat_id, b"look at this", media_ids=[upload["mediaId"]])
    # Then bob receives the MESSAGE with that mediaId
    message = await bob.next_message(10)
    assert (message.seq, message.server_msg_id) == (ack.seq, ack.server_msg_id)
    assert message.media_ids == [upload["mediaId"]]
    # And bob gets a MEDIA_URL that downloads exactly the uploaded bytes
    media_url = await bob.request(
        {"action": "mediaDownload", "chatId": chat_id, "mediaId": message.media_ids[0]}
    )
    assert media_url["type"] == "MEDIA_URL" and media_url["mediaId"] == upload["mediaId"]
    status, body, headers = await get_download(media_url["url"])
    assert (status, body) == (200, blob)
    # served as an opaque attachment, never as the image/png it was announced as
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == "attachment"
    # And mallory, not a member, is FORBIDDEN (and gets no URL)
    with pytest.raises(ChatServerError) as refused:
        await mallory.request({"action": "mediaDownload", "chatId": chat_id, "mediaId": upload["mediaId"]})
    assert refused.value.code == "FORBIDDEN"
    # And mallory cannot attach it to a chat of her own either
    own_chat = (await mallory.create_chat("direct", [alice_id]))["chatId"]
    with pytest.raises(ChatServerError) as attached:
        await mallory.send(own_chat, b"mine now", media_ids=[upload["mediaId"]], deadline=10)
    assert attached.value.code == "NOT_FOUND"
    with pytest.raises(ChatServerError) as via_own:
        await mallory.request({"action": "mediaDownload", "chatId": own_chat, "mediaId": upload["mediaId"]})
    assert via_own.value.code == "NOT_FOUND"


async def test_upload_refusals_over_the_wire(connect: Connect, new_user: Callable[[str], str]) -> None:
    # Given a chat of alice and bob, and mallory outside it
    alice_id, bob_id, mallory_id = new_user("alice"), new_user("bob"), new_user("mallory")
    alice, mallory = await connect(alice_id), await connect(mallory_id)
    chat_id = (await alice.create_chat("direct", [bob_id]))["chatId"]
    # Then a non-member's upload is FORBIDDEN, an oversized one TOO_LARGE, an empty one BAD_REQUEST
    cases = [
        (mallory, 10, "FORBIDDEN"),
        (alice, 100 * 1024 * 1024 + 1, "TOO_LARGE"),
        (alice, 0, "BAD_REQUEST"),
    ]
    for client, size, code in cases:
        with pytest.raises(ChatServerError) as err:
            await client.request(
                {"action": "mediaUpload", "chatId": chat_id, "contentType": "image/png", "size": size}
            )
        assert err.value.code == code
