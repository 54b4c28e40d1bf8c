"""The `chat` CLI over the local stack, through pipes as a user's terminal would drive it: text and a
file encrypted end to end, the file saved decrypted, safety numbers alike on both sides, and the
device store's key kept in a file beside the store without a prompt."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from local_stack.child import RunningStack

LINE_TIMEOUT_S = 20


class Cli:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen: list[str] = []

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())

    async def read_until(self, fragment: str) -> str:
        assert self.proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), LINE_TIMEOUT_S)).decode()
            assert line, f"the CLI ended before printing {fragment!r}; it printed {self.seen}"
            self.seen.append(line)
            if fragment in line:
                return line.strip()


@asynccontextmanager
async def chat_cli(stack: RunningStack, user: str, store: Path, downloads: Path) -> AsyncIterator[Cli]:
    env = {**os.environ, "CHAT_URL": stack.url, "CHAT_JWT_SECRET": stack.secret, "CHAT_STORE_DIR": str(store)}
    env.pop("CHAT_STORE_KEY", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chat_client.cli",
        "connect",
        "--user",
        user,
        "--downloads",
        str(downloads),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    cli = Cli(proc)
    try:
        await cli.read_until("/quit")  # connected, keys published, the help printed
        yield cli
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_cli_encrypts_text_and_files_and_shows_matching_safety_numbers(
    stack: RunningStack, new_user: Callable[[str], str], tmp_path: Path
) -> None:
    alice_id, bob_id = new_user("alice"), new_user("bob")
    store, downloads = tmp_path / "store", tmp_path / "downloads"
    report = tmp_path / "report.pdf"
    report.write_bytes(os.urandom(200_000))
    # Given bob's and alice's CLIs, connected with stores of their own
    async with (
        chat_cli(stack, bob_id, store, downloads) as bob,
        chat_cli(stack, alice_id, store, tmp_path / "alice-downloads") as alice,
    ):
        # When alice opens a direct chat with bob and types a line
        alice.type(f"/new direct {bob_id}")
        await alice.read_until("is now current")
        alice.type("hi bob \N{WAVING HAND SIGN}")
        await alice.read_until("* sent")
        # Then bob's CLI shows it decrypted
        assert (await bob.read_until("hi bob")).endswith(f"{alice_id}: hi bob \N{WAVING HAND SIGN}")
        # When alice sends a file with a caption
        alice.type(f"/send-file {report} the quarterly report")
        await alice.read_until("* sent")
        # Then bob's CLI saves it decrypted, byte for byte
        saved = await bob.read_until("saved to")
        assert "report.pdf (200000 bytes)" in saved and saved.endswith("the quarterly report")
        [path] = downloads.iterdir()
        assert path.read_bytes() == report.read_bytes()
        # When each asks for the safety number with the other, Then both see the same digits
        alice.type(f"/verify {bob_id}")
        bob.type(f"/verify {alice_id}")
        alice_number = (await alice.read_until("safety number with")).split(": ", 1)[1]
        bob_number = (await bob.read_until("safety number with")).split(": ", 1)[1]
        assert alice_number == bob_number and len(alice_number.replace(" ", "")) == 60
        # When alice confirms, Then bob is verified
        alice.type(f"/verify {bob_id} confirm")
        assert f"{bob_id} verified" in await alice.read_until("verified")
        # When input ends, Then both exit cleanly
        for cli in (alice, bob):
            assert cli.proc.stdin is not None
            cli.proc.stdin.close()
            assert await asyncio.wait_for(cli.proc.wait(), LINE_TIMEOUT_S) == 0
    # And each device's store sits encrypted beside its key file, readable by its owner only
    keys = sorted(store.glob("*.key"))
    assert len(keys) == 2 and all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    stores = sorted(store.glob("*.store"))
    assert len(stores) == 2 and all(b"hi bob" not in s.read_bytes() for s in stores)
