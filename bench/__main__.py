"""`make bench`: the message path on the local stack, measured under both timing profiles.

    python -m bench [--profiles fast,aws] [--seconds 15] [--rates 10,50,100] [--group-online 150,1000]

For each profile (`CHAT_TIMING`: `fast` runs the emulators as fast as they go, `aws` makes every
emulated hop take what AWS's does, docs/TIMING.md) a local stack is started as `make run` does,
and these runs are made against it:
- 1:1 (bench/message_path.py): 100 users in 50 direct chats at the offered rates, open loop, then
  closed loop (the most it sustains), then receipts;
- mixed (bench/mixed.py): the same kind of users in 50 direct chats and 20 groups of 50;
- hot chat (bench/hot_chat.py): bursts into one group, and one chat vs 100 chats, refusals counted;
- group fan-out (bench/group_fanout.py): a 10,000-member group with some members online;
- encryption (bench/encryption.py): a key rotation's to-device messages in a 1,000-member group,
  stored for real. Its client figures (per-message Megolm, Olm setup, bytes, the rotation's
  messages and write units) need no stack: they are measured once, before the profiles.
Every figure is printed as it is measured; `--json` also writes them all to a file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.encryption import STACK_GROUP_MAX, ClientFigures, run_encryption_client, run_rotation_over_stack
from bench.encryption_report import print_encryption_client, print_rotation_over_stack
from bench.group_fanout import print_group_row, run_group_fanout
from bench.hot_chat import print_hot_chat, run_hot_chat
from bench.message_path import make_pairs, print_receipts, print_row, report, run_rate, run_receipts
from bench.mixed import print_mixed, run_mixed
from local_stack.child import start_local_stack


async def bench_profile(
    profile: str, args: argparse.Namespace, encryption: ClientFigures | None
) -> list[dict[str, Any]]:
    log = Path(tempfile.mkdtemp(prefix=f"chat-bench-{profile}-")) / "local-stack.log"
    stack = start_local_stack(log, {"CHAT_LOG_LEVEL": "WARNING", "CHAT_TIMING": profile})
    rows: list[dict[str, Any]] = []

    def keep(row: dict[str, Any]) -> None:
        rows.append({"profile": profile, **row})

    try:
        print(f"\n=== timing profile {profile} (local stack at {stack.url}; log {log})", flush=True)
        if "1:1" in args.runs:
            pairs = await make_pairs(stack, args.users)
            # Warm-up: the functions' first calls build clients, and DynamoDB Local's JVM compiles
            # its hot paths; on AWS both are warm. Not measured.
            await run_rate(stack, pairs, rate=50, seconds=args.warmup, size=args.size)
            for rate in [*args.rates, None]:
                row = report(await run_rate(stack, pairs, rate, args.seconds, args.size), args.size)
                print_row(row)
                keep(row)
            receipts = await run_receipts(stack, pairs, args.seconds)
            print_receipts(receipts)
            keep(receipts)
            await asyncio.gather(*(c.close() for p in pairs for c in (p.sender, p.receiver)))
        if "mixed" in args.runs:
            for rate in args.mixed_rates:
                mixed = await run_mixed(stack, rate, args.seconds, args.warmup)
                print_mixed(mixed)
                keep(mixed)
        if "hot" in args.runs:
            hot = await run_hot_chat(stack)
            print_hot_chat(hot)
            for row in hot:
                keep(row)
        if "group" in args.runs:
            for online in args.group_online:
                group_row = (await run_group_fanout(stack, online, args.group_sends)).row()
                print_group_row(group_row)
                keep(group_row)
        if encryption is not None and len(encryption.group.receivers) < STACK_GROUP_MAX:
            rotation = await run_rotation_over_stack(stack, encryption.group)
            print_rotation_over_stack(rotation)
            keep(rotation)
        elif encryption is not None:
            print(
                "encryption | rotation over the stack: skipped "
                f"(a group of {STACK_GROUP_MAX:,}+ does not fit one createChat frame)"
            )
    finally:
        stack.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    csv = lambda cast: lambda s: [cast(x) for x in s.split(",") if x]  # noqa: E731
    parser.add_argument("--profiles", type=csv(str), default=["fast", "aws"])
    parser.add_argument("--runs", type=csv(str), default=["1:1", "mixed", "hot", "group", "encryption"])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rates", type=csv(float), default=[10.0, 50.0, 100.0])
    parser.add_argument("--mixed-rates", type=csv(float), default=[20.0, 50.0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of unmeasured traffic first")
    parser.add_argument("--size", type=int, default=256, help="ciphertext bytes per message")
    parser.add_argument(
        "--group-online", type=csv(int), default=[150, 1000], help="online members of the 10,000-member group"
    )
    parser.add_argument("--group-sends", type=int, default=5, help="messages sent to the group per run")
    parser.add_argument(
        "--group-members", type=int, default=1000, help="members of the group whose key rotation is measured"
    )
    parser.add_argument("--e2e-messages", type=int, default=1000, help="texts encrypted and decrypted")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows: list[dict[str, Any]] = []
    encryption = None
    if "encryption" in args.runs:
        print("\n=== encryption, client side (no stack)", flush=True)
        encryption = run_encryption_client(args.group_members, args.e2e_messages)
        print_encryption_client(encryption.rows)
        rows += [{"profile": None, **row} for row in encryption.rows]
    rows += [
        row for profile in args.profiles for row in asyncio.run(bench_profile(profile, args, encryption))
    ]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    sys.exit(0 if rows else 1)


if __name__ == "__main__":
    main()
