"""``chat``: mint local tokens and chat interactively from a terminal (or a pipe), end-to-end
encrypted (chat_client/secure.py). This module parses the command line and runs each subcommand;
the interactive session's commands are chat_client/cli_session.py.

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
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from websockets.exceptions import WebSocketException

from chat_client.cli_session import InteractiveSession
from chat_client.client import ChatClient
from chat_client.crypto.store import (
    KEY_BYTES,
    DeviceStore,
    StoreLocked,
    StoreUnreadable,
    store_key_from_file,
    store_path,
)
from chat_client.models import ChatAuthError, ChatServerError
from chat_client.secure import SecureChat
from chat_client.tokens import DEFAULT_SECRET, mint_token, token_identity

logger = logging.getLogger("chat_client.cli")


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


if __name__ == "__main__":
    sys.exit(main())
