"""End-to-end encryption over the local stack (chat_client/secure.py): alice (phone and laptop),
bob and carol in a group and a direct chat exchange text and a 5 MB file; every device decrypts
what is meant for it; a removed member reads nothing that follows; a device added later reads from
its join; a verified user's changed key stops the sender; and nothing the stack stores holds a
plaintext or a byte of the file."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest

from chaos.state import REGION, snapshotter
from chat_client.crypto.megolm import PendingKey
from chat_client.crypto.store import DeviceStore, new_store_key
from chat_client.crypto.trust import IdentityChanged
from chat_client.secure import Decrypted, SecureChat
from local_stack.child import RunningStack

Connect = Callable[..., Any]
FILE_BYTES = 5 * 1024 * 1024
Device = Callable[[str, str], Awaitable[SecureChat]]
T = TypeVar("T")
STEP_S = 45  # a step of these scenarios takes seconds; one that takes this long hangs


async def within(step: str, awaitable: Awaitable[T]) -> T:
    """The step's result; a step that hangs fails the test naming it (and the stack log is shown)."""
    try:
        async with asyncio.timeout(STEP_S):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"{step}: not done within {STEP_S} s") from None


@asynccontextmanager
async def secure_devices(connect: Connect, tmp_path: Path) -> AsyncIterator[Device]:
    """device(user, deviceId): a connected SecureChat with its own store, keys published."""
    started: list[SecureChat] = []

    async def device(user: str, device_id: str) -> SecureChat:
        store = DeviceStore(tmp_path / f"{user}-{device_id}-{len(started)}", user, device_id, new_store_key())
        secure = SecureChat(await connect(user, device_id), store.open())
        await secure.start()
        started.append(secure)
        return secure

    try:
        yield device
    finally:
        for secure in started:
            await secure.close()
            secure.engine.olm.store.close()


async def read(secure: SecureChat, server_msg_id: str, timeout: float = 20) -> Decrypted:
    """The message as this device finally decrypts it (pending ones are said again once keyed)."""
    while True:
        got = await secure.next_message(timeout)
        if got.message.server_msg_id == server_msg_id and got.state != "pending":
            return got


def stored_everywhere(stack: RunningStack) -> tuple[str, list[bytes]]:
    """Every table item (as text) and every object's bytes the local stack holds."""
    tables = "\n".join(snapshotter(stack.emulator_urls["dynamodb-local"], stack.emulator_urls["moto"])())
    s3 = boto3.client(
        "s3",
        endpoint_url=stack.emulator_urls["moto"],
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    objects = [
        s3.get_object(Bucket=b["Name"], Key=o["Key"])["Body"].read()
        for b in s3.list_buckets()["Buckets"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b["Name"])
        for o in page.get("Contents", [])
    ]
    return tables, objects


async def test_text_and_a_5_mb_file_reach_every_device_in_a_group_and_a_direct_chat_as_ciphertext_only(
    stack: RunningStack, connect: Connect, new_user: Callable[[str], str], tmp_path: Path
) -> None:
    alice_id, bob_id, carol_id = new_user("alice"), new_user("bob"), new_user("carol")
    async with secure_devices(connect, tmp_path) as device:
        # Given alice on her phone and laptop, bob and carol, each device with its own store
        phone, laptop = await device(alice_id, "d1"), await device(alice_id, "d2")
        bob, carol = await device(bob_id, "d1"), await device(carol_id, "d1")
        group = (await phone.client.create_chat("group", [bob_id, carol_id], name="trip"))["chatId"]
        direct = (await bob.client.create_chat("direct", [alice_id]))["chatId"]
        photo = tmp_path / "photo.jpg"
        photo.write_bytes(os.urandom(FILE_BYTES))
        texts = ["the launch code is 4 8 15 16 23 42", "meet at the north gate", "only for alice"]

        # When alice's phone sends a text and the 5 MB file into the group
        group_text = await within("send the text", phone.send_text(group, texts[0]))
        group_file = await within(
            "send the file", phone.send_media(group, photo, "image/jpeg", caption=texts[1])
        )
        # Then her laptop, bob and carol each decrypt both, from her phone, and get the file back
        for reader in (laptop, bob, carol):
            got = await read(reader, group_text.server_msg_id)
            assert (got.state, got.text, got.message.sender_device) == ("ok", texts[0], "d1")
            assert got.sender_key == phone.engine.olm.identity_key
            file = await read(reader, group_file.server_msg_id)
            assert file.state == "ok" and file.is_file and file.text == texts[1]
            assert file.content and (file.content["name"], file.content["contentType"]) == (
                "photo.jpg",
                "image/jpeg",
            )
            assert await within("download the file", reader.download(file)) == photo.read_bytes()

        # When bob answers in the direct chat, Then both of alice's devices decrypt it
        answer = await within("answer in the direct chat", bob.send_text(direct, texts[2]))
        for reader in (phone, laptop):
            got = await read(reader, answer.server_msg_id)
            assert (got.state, got.text, got.message.sender) == ("ok", texts[2], bob_id)

        # And no table item or object of the stack holds a text (plain or base64) or file bytes
        tables, objects = stored_everywhere(stack)
        for text in texts:
            assert text not in tables and base64.b64encode(text.encode()).decode() not in tables
        assert all(text.encode() not in obj for obj in objects for text in texts)
        file_bytes = photo.read_bytes()
        uploaded = [obj for obj in objects if len(obj) == FILE_BYTES]
        assert uploaded, "the encrypted file is in the bucket"
        for sample in (file_bytes[:64], file_bytes[FILE_BYTES // 2 : FILE_BYTES // 2 + 64], file_bytes[-64:]):
            assert all(sample not in obj for obj in objects)
            assert base64.b64encode(sample[:48]).decode() not in tables
        assert "photo.jpg" not in tables and "image/jpeg" not in tables


async def test_a_removed_member_cannot_read_what_follows_and_a_later_device_reads_from_its_join(
    stack: RunningStack, connect: Connect, new_user: Callable[[str], str], tmp_path: Path
) -> None:
    alice_id, bob_id, carol_id = new_user("alice"), new_user("bob"), new_user("carol")
    async with secure_devices(connect, tmp_path) as device:
        # Given alice, bob and carol in a group where alice has sent one message all read
        alice, bob, carol = (
            await device(alice_id, "d1"),
            await device(bob_id, "d1"),
            await device(carol_id, "d1"),
        )
        group = (await alice.client.create_chat("group", [bob_id, carol_id]))["chatId"]
        before = await alice.send_text(group, "before the removal")
        for reader in (bob, carol):
            assert (await read(reader, before.server_msg_id)).text == "before the removal"

        # When alice removes carol and sends again
        await alice.remove_members(group, [carol_id])
        after = await alice.send_text(group, "after the removal")
        # Then bob reads it
        got = await read(bob, after.server_msg_id)
        assert (got.state, got.text) == ("ok", "after the removal")
        # And carol, even handed the ciphertext, has no key for it (none was sent to her)
        with pytest.raises(PendingKey):
            carol.engine.decrypt(group, alice_id, "d1", got.message.ciphertext)
        assert carol.client.to_device.empty()

        # When bob adds a laptop later, and alice sends after it published its keys
        laptop = await device(bob_id, "d2")
        later = await alice.send_text(group, "after the laptop joined")
        # Then the laptop shows what came before it as "no key for this device" (never pending:
        # no key will come), reads that message, and bob's phone too
        history = await read(laptop, before.server_msg_id)
        assert (history.state, history.text) == ("no_key", None)
        for reader in (laptop, bob):
            got = await read(reader, later.server_msg_id)
            assert (got.state, got.text) == ("ok", "after the laptop joined")
        # And carol still reads nothing after her removal
        with pytest.raises(PendingKey):
            carol.engine.decrypt(group, alice_id, "d1", got.message.ciphertext)


async def test_a_verified_users_changed_identity_key_stops_sending_until_accepted(
    stack: RunningStack, connect: Connect, new_user: Callable[[str], str], tmp_path: Path
) -> None:
    alice_id, bob_id = new_user("alice"), new_user("bob")
    async with secure_devices(connect, tmp_path) as device:
        # Given alice and bob in a direct chat, who compared their safety numbers (the same 60
        # digits on both sides) and verified each other
        alice, bob = await device(alice_id, "d1"), await device(bob_id, "d1")
        direct = (await alice.client.create_chat("direct", [bob_id]))["chatId"]
        number = await alice.safety_number(bob_id)
        assert number == await bob.safety_number(alice_id)
        assert len(number.replace(" ", "")) == 60 and number.replace(" ", "").isdigit()
        alice.verify(bob_id)
        first = await alice.send_text(direct, "verified hello")
        got = await read(bob, first.server_msg_id)
        assert (got.state, got.verified) == ("ok", False)  # bob has not verified alice
        bob.verify(alice_id)
        reply = await bob.send_text(direct, "verified reply")
        assert (await read(alice, reply.server_msg_id)).verified

        # When bob's phone comes back with a new identity key (reinstalled, or taken over)
        await bob.close()
        await bob.client.close()  # the old app is gone
        reinstalled = await device(bob_id, "d1")
        # Then alice is warned (DEVICES_CHANGED made her read bob's devices again), her safety
        # number with bob changed, and her send is refused before anything goes out
        notice = await asyncio.wait_for(alice.notices.get(), 15)
        with pytest.raises(IdentityChanged):
            await alice.send_text(direct, "must not go out")
        assert (notice.user_id, notice.device_id, notice.change, notice.verified_user) == (
            bob_id,
            "d1",
            "key_changed",
            True,
        )
        assert await alice.safety_number(bob_id) != number
        # When alice accepts the change, Then sending resumes (bob no longer verified) and the
        # reinstalled phone reads it
        alice.accept(bob_id)
        resumed = await alice.send_text(direct, "after accepting")
        got = await read(reinstalled, resumed.server_msg_id)
        assert (got.state, got.text, got.verified) == ("ok", "after accepting", False)
