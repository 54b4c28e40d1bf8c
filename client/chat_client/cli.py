"""``chat``: mint local tokens and chat interactively from a terminal (or a pipe), end-to-end
encrypted (chat_client/secure.py).

chat token --user alice [--device laptop] [--secret S]
chat connect --user alice [--device laptop] [--url ws://127.0.0.1:8080/] [--token JWT]
             [--store DIR] [--downloads DIR]
chat notifications [--log FILE] [--token T]   (what the local stack sent to phones)

The device's keys and sessions live in an encrypted store under --store (default $CHAT_STORE_DIR,
else ~/.local/share/chat); its key comes from $CHAT_STORE_KEY (base64 of 32 bytes) or, when that is
unset, from a file beside the store made on first use. Nothing is ever prompted for.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import logging
import mimetypes
import os
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TextIO

from websockets.exceptions import WebSocketException

from chat_client.client import ChatClient
from chat_client.crypto.store import (
    KEY_BYTES,
    DeviceStore,
    StoreLocked,
    StoreUnreadable,
    store_key_from_file,
    store_path,
)
from chat_client.crypto.trust import DeviceNotice, IdentityChanged
from chat_client.media import MediaTransferError
from chat_client.models import Ack, ChatAuthError, ChatServerError, Message
from chat_client.secure import Decrypted, SecureChat
from chat_client.tokens import DEFAULT_SECRET, mint_token, token_identity

logger = logging.getLogger("chat_client.cli")

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


def _default_url() -> str:
    return os.environ.get("CHAT_URL") or f"ws://127.0.0.1:{os.environ.get('CHAT_PORT') or '8080'}/"


def _default_secret() -> str:
    return os.environ.get("CHAT_JWT_SECRET") or DEFAULT_SECRET


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chat", description="Chat client for the serverless chat backend.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    tok = sub.add_parser("token", help="print a locally signed token (local stack only)")
    tok.add_argument("--user", required=True, help="user id (the token's sub)")
    tok.add_argument("--device", default="cli", help="device id (default: cli)")
    tok.add_argument(
        "--secret", default=None, help="HS256 secret (default: $CHAT_JWT_SECRET or local-dev-secret)"
    )
    tok.add_argument("--ttl", type=int, default=86400, help="lifetime in seconds (default: 86400)")
    tok.set_defaults(func=_cmd_token)

    con = sub.add_parser("connect", help="connect and chat interactively")
    con.add_argument("--user", default=None, help="user id (required unless --token is given)")
    con.add_argument(
        "--device", default="cli", help="device id (default: cli; sent as ?device= for tokens without one)"
    )
    con.add_argument(
        "--url", default=None, help="WebSocket URL (default: $CHAT_URL or ws://127.0.0.1:$CHAT_PORT/)"
    )
    con.add_argument("--token", default=None, help="use this token instead of minting one locally")
    con.add_argument("--secret", default=None, help="HS256 secret for the locally minted token")
    con.add_argument(
        "--store", default=None, help="device store folder (default: $CHAT_STORE_DIR or ~/.local/share/chat)"
    )
    con.add_argument(
        "--downloads",
        default=None,
        help="where received files are saved (default: $CHAT_DOWNLOADS or ./chat-downloads)",
    )
    con.set_defaults(func=_cmd_connect)

    notes = sub.add_parser(
        "notifications", help="print the push notifications the local stack sent to phones"
    )
    notes.add_argument(
        "--log", default=None, help="the stack's push log (default: $CHAT_PUSH_LOG, else the stack's default)"
    )
    notes.add_argument("--token", default=None, help="only those sent to this device token")
    notes.set_defaults(func=_cmd_notifications)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    result: int = args.func(args)
    return result


def _cmd_token(args: argparse.Namespace) -> int:
    print(mint_token(args.user, args.device, secret=args.secret or _default_secret(), ttl_s=args.ttl))
    return 0


def _cmd_connect(args: argparse.Namespace) -> int:
    if args.token is None and not args.user:
        print("chat connect: --user is required unless --token is given", file=sys.stderr)
        return 2
    token = args.token or mint_token(args.user, args.device, secret=args.secret or _default_secret())
    user = args.user or token_identity(token)[0] or "?"
    url = args.url or _default_url()
    store_dir = Path(args.store or os.environ.get("CHAT_STORE_DIR") or Path.home() / ".local/share/chat")
    downloads = Path(args.downloads or os.environ.get("CHAT_DOWNLOADS") or "chat-downloads")
    try:
        store = DeviceStore(store_dir, user, args.device, _store_key(store_dir, user, args.device)).open()
    except (StoreLocked, StoreUnreadable, OSError) as exc:
        print(f"chat: cannot open the device store in {store_dir}: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_run_interactive(url, token, user, args.device, store, downloads))
    except KeyboardInterrupt:
        return 130
    finally:
        store.close()


def _cmd_notifications(args: argparse.Namespace) -> int:
    """The local stack records what SNS would send to phones, one JSON line each (its startup line
    names the file as `push-log`)."""
    port = os.environ.get("CHAT_PORT") or "8080"
    path = Path(
        args.log or os.environ.get("CHAT_PUSH_LOG") or Path(tempfile.gettempdir()) / f"chat-push-{port}.jsonl"
    )
    if not path.exists():
        print(f"chat: no push notifications recorded yet ({path})", file=sys.stderr)
        return 0
    for line in path.read_text(encoding="utf-8").splitlines():
        note = json.loads(line)
        if args.token is None or note.get("token") == args.token:
            print(describe_notification(note))
    return 0


def describe_notification(note: dict[str, Any]) -> str:
    """One recorded notification: when, to which token, and what it says (chat and count)."""
    message = note.get("message") or {}
    bodies = (
        [json.loads(v) for v in message.values() if isinstance(v, str)] if isinstance(message, dict) else []
    )
    body: dict[str, Any] = bodies[0] if bodies else {}
    data = body.get("data", body)
    at = time.strftime("%H:%M:%S", time.localtime(float(note.get("at", 0))))
    return (
        f"{at} {note.get('platform')} {note.get('token')}: chat {data.get('chatId')}, {data.get('count')} new"
    )


def _store_key(store_dir: Path, user: str, device: str) -> bytes:
    """$CHAT_STORE_KEY (base64), else a key file beside the store, made on first use."""
    given = os.environ.get("CHAT_STORE_KEY")
    if given is None:
        return store_key_from_file(store_path(store_dir, user, device).with_suffix(".key"))
    try:
        key = base64.b64decode(given, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise StoreUnreadable(f"CHAT_STORE_KEY must be the base64 of {KEY_BYTES} bytes")
    return key


async def _run_interactive(
    url: str, token: str, user: str, device: str, store: DeviceStore, downloads: Path
) -> int:
    # A token without a device claim (Cognito) takes the device from the URL's query string.
    client = ChatClient(url, token, device=device)
    try:
        await client.connect()
    except ChatAuthError as exc:
        print(f"chat: authentication refused ({exc})", file=sys.stderr)
        return 1
    except (OSError, TimeoutError, ChatServerError, WebSocketException) as exc:
        print(f"chat: cannot connect to {url}: {exc}", file=sys.stderr)
        return 1
    secure = SecureChat(client, store)
    try:
        await secure.start()
        session = InteractiveSession(
            secure, user, sys.stdout, downloads, interactive=sys.stdin.isatty() and sys.stdout.isatty()
        )
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        _start_stdin_reader(asyncio.get_running_loop(), lines)
        await session.run(lines)
    finally:
        await secure.close()
        await client.close()
    return 0


def _start_stdin_reader(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Feed stdin lines to ``lines`` from a daemon thread (None = EOF).

    A thread works for a terminal, a pipe and a regular file alike, and being a daemon it never
    holds up exit while blocked in readline (an executor thread would).
    """

    def pump() -> None:
        # RuntimeError: the loop is already closed (we are exiting); nothing left to feed.
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=pump, name="chat-stdin", daemon=True).start()


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


if __name__ == "__main__":
    sys.exit(main())
