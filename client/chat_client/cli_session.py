"""The ``chat connect`` session (chat_client/cli.py starts it): the line-oriented UI over a
SecureChat, its slash commands, and incoming messages and device notices printed as they come."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Awaitable
from pathlib import Path
from typing import TextIO

from chat_client.client import ChatClient
from chat_client.crypto.trust import DeviceNotice, IdentityChanged
from chat_client.media import MediaTransferError
from chat_client.models import Ack, ChatServerError, Message
from chat_client.secure import Decrypted, SecureChat

HELP = """\
commands:
  /new direct USER               start (or reopen) a 1:1 chat with USER and make it current
  /new group NAME USER [USER...] create a group and make it current
  /open CHAT_ID                  make CHAT_ID the current chat
  /chats                         list known chats with their latest seq
  /add USER [USER...]            add members to the current group (admins)
  /remove USER [USER...]         remove members from the current group (admins; anyone may remove themself)
  /members                       list the current chat's members
  /send-file PATH [CAPTION]      send a file to the current chat (received files are saved decrypted)
  /verify USER                   show the safety number you share with USER (compare it with theirs)
  /verify USER confirm           mark USER verified once the numbers match
  /accept USER                   accept a verified USER's changed device keys (sending resumes)
  /help                          this text
  /quit                          leave (end of input does the same)
any other line is sent to the current chat. Everything is encrypted end to end: the server only
ever holds ciphertext."""


class InteractiveSession:
    """The line-oriented UI: commands, sends to the current chat, incoming messages printed as they come."""

    PROMPT = "> "

    def __init__(
        self, secure: SecureChat, user: str, out: TextIO, downloads: Path, *, interactive: bool = False
    ) -> None:
        self.secure = secure
        self.client: ChatClient = secure.client
        self.user = user
        self.out = out
        self.downloads = downloads
        self.interactive = interactive
        self.current: str | None = None

    async def run(self, lines: asyncio.Queue[str | None]) -> None:
        self.emit(f"* connected as {self.user}; /help for commands")
        self.emit(HELP)
        printers = [
            asyncio.create_task(self._print_incoming(), name="chat-cli-printer"),
            asyncio.create_task(self._print_notices(), name="chat-cli-notices"),
        ]
        try:
            while True:
                self._prompt()
                line = await lines.get()
                if line is None:
                    break
                if not await self.handle(line.rstrip("\r\n")):
                    break
        finally:
            for printer in printers:
                printer.cancel()
            await asyncio.gather(*printers, return_exceptions=True)

    def emit(self, text: str) -> None:
        """Print a line of output on its own line, even while the user is typing."""
        if self.interactive:
            self.out.write("\r\x1b[2K")  # clear the prompt line; the prompt is redrawn below
        self.out.write(text + "\n")
        self.out.flush()

    def _prompt(self) -> None:
        if self.interactive:
            where = self.current or "no chat"
            self.out.write(f"[{where}] {self.PROMPT}")
            self.out.flush()

    def format_message(self, message: Message, body: str) -> str:
        return f"[{message.chat_id} #{message.seq}] {message.sender}: {body}"

    async def describe(self, received: Decrypted) -> str:
        """What a received message shows: its text, a saved file, or why it cannot be read (yet)."""
        message = received.message
        if received.state == "pending":
            return self.format_message(message, "(waiting for the key to decrypt this message)")
        if received.state == "no_key":
            return self.format_message(message, "(sent before this device existed: no key for it here)")
        if received.state == "failed":
            return self.format_message(message, f"(could not be decrypted: {received.reason})")
        if message.sender == "system":
            return self.format_message(message, message.text)
        if received.is_file:
            return self.format_message(message, await self._save_file(received))
        return self.format_message(message, received.text or "")

    async def _save_file(self, received: Decrypted) -> str:
        content = received.content or {}
        name = Path(str(content.get("name") or "file")).name or "file"  # no path from the sender
        target = self.downloads / f"{received.message.server_msg_id}-{name}"
        caption = f" {received.text}" if received.text else ""
        try:
            data = await self.secure.download(received)
        except (ChatServerError, MediaTransferError, ValueError, KeyError) as exc:
            return f"sent {name}, which could not be fetched: {exc}{caption}"
        self.downloads.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return f"sent {name} ({len(data)} bytes), saved to {target}{caption}"

    async def _print_incoming(self) -> None:
        while True:
            received = await self.secure.messages.get()
            self.emit(await self.describe(received))
            if self.current is None:
                self.current = received.message.chat_id
                self.emit(f"* current chat: {received.message.chat_id}")
            self._prompt()

    async def _print_notices(self) -> None:
        while True:
            self.emit(self.describe_notice(await self.secure.notices.get()))
            self._prompt()

    @staticmethod
    def describe_notice(notice: DeviceNotice) -> str:
        if notice.change == "added":
            who = f"* {notice.user_id} added a device ({notice.device_id})"
            return f"{who}; your safety number with them changed"
        changed = f"! {notice.user_id}'s device {notice.device_id} changed its identity key"
        if notice.verified_user:
            return (
                f"{changed}: sending to them is refused until you compare safety numbers again"
                f" and /accept {notice.user_id}"
            )
        return f"{changed} (reinstalled, or someone else)"

    async def handle(self, line: str) -> bool:
        """Handle one input line; False means quit."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("/"):
            return await self._command(text.split())
        if self.current is None:
            self.emit("! no chat open: use /new or /open first")
            return True
        await self._send(self.secure.send_text(self.current, line))
        return True

    async def _send(self, sending: Awaitable[Ack]) -> None:
        try:
            ack = await sending
        except ChatServerError as exc:
            self.emit(f"! error: {exc.code}: {exc.message}")
        except IdentityChanged as exc:
            self.emit(
                f"! not sent: {exc}; compare safety numbers (/verify {exc.user_id}),"
                f" then /accept {exc.user_id}"
            )
        except (MediaTransferError, OSError) as exc:
            self.emit(f"! not sent: {exc}")
        else:
            self.emit(f"* sent [{ack.chat_id} #{ack.seq}]")

    async def _command(self, words: list[str]) -> bool:
        cmd, rest = words[0].lower(), words[1:]
        if cmd in ("/quit", "/exit"):
            return False
        if cmd == "/help":
            self.emit(HELP)
        elif cmd == "/open" and len(rest) == 1:
            self.current = rest[0]
            self.emit(f"* current chat: {self.current}")
        elif cmd == "/chats":
            await self._list_chats()
        elif cmd == "/new" and len(rest) == 2 and rest[0] == "direct":
            await self._create("direct", rest[1:], None)
        elif cmd == "/new" and len(rest) >= 3 and rest[0] == "group":
            await self._create("group", rest[2:], rest[1])
        elif cmd == "/verify" and len(rest) in (1, 2):
            await self._verify(rest[0], rest[1:] == ["confirm"])
        elif cmd == "/accept" and len(rest) == 1:
            self.secure.accept(rest[0])
            self.emit(f"* accepted {rest[0]}'s current device keys ({rest[0]} is no longer verified)")
        elif cmd in ("/add", "/remove", "/members", "/send-file") and self.current is None:
            self.emit("! no chat open: use /new or /open first")
        elif cmd == "/send-file" and rest:
            await self._send_file(rest[0], " ".join(rest[1:]) or None)
        elif cmd in ("/add", "/remove") and rest:
            await self._change_members(cmd, rest)
        elif cmd == "/members":
            await self._list_members()
        else:
            self.emit(f"! unknown or incomplete command: {' '.join(words)} (try /help)")
        return True

    async def _create(self, kind: str, members: list[str], name: str | None) -> None:
        try:
            chat = await self.client.create_chat(kind, members, name=name)
        except (ChatServerError, TimeoutError, ConnectionError) as exc:
            self.emit(f"! could not create the chat: {exc}")
            return
        self.current = str(chat.get("chatId"))
        self.emit(f"* chat {self.current} ({kind}, {chat.get('memberCount')} members) is now current")

    async def _change_members(self, cmd: str, users: list[str]) -> None:
        assert self.current is not None
        change = self.client.add_members if cmd == "/add" else self.secure.remove_members
        try:
            chat = await change(self.current, users)
        except (ChatServerError, TimeoutError, ConnectionError) as exc:
            self.emit(f"! could not change the members: {exc}")
            return
        self.emit(f"* {self.current} now has {chat.get('memberCount')} members")

    async def _send_file(self, path: str, caption: str | None) -> None:
        assert self.current is not None
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        await self._send(self.secure.send_media(self.current, path, content_type, caption))

    async def _verify(self, user: str, confirm: bool) -> None:
        try:
            number = await self.secure.safety_number(user)
        except (ChatServerError, TimeoutError, ConnectionError) as exc:
            self.emit(f"! could not read {user}'s devices: {exc}")
            return
        if confirm:
            self.secure.verify(user)
            self.emit(f"* {user} verified (safety number {number})")
        else:
            self.emit(f"* safety number with {user}: {number}")
            self.emit(f"* compare it with theirs; if it matches: /verify {user} confirm")

    async def _list_members(self) -> None:
        assert self.current is not None
        cursor: str | None = None
        try:
            while True:
                page = await self.client.get_members(self.current, cursor)
                for member in page.get("members", []):
                    self.emit(f"* {member.get('userId')} ({member.get('role')})")
                cursor = page.get("next")
                if cursor is None:
                    return
        except (ChatServerError, TimeoutError, ConnectionError) as exc:
            self.emit(f"! could not list the members: {exc}")

    async def _list_chats(self) -> None:
        try:
            heads = await self.client.sync()
        except (ChatServerError, TimeoutError, ConnectionError) as exc:
            self.emit(f"! could not refresh: {exc}")
            heads = dict(self.client.heads)
        if not heads:
            self.emit("* no chats yet")
        for chat_id, head in sorted(heads.items()):
            mark = " (current)" if chat_id == self.current else ""
            self.emit(f"* {chat_id} latest #{head}, seen #{self.client.cursors.get(chat_id, 0)}{mark}")
