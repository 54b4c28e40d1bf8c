"""`make chaos`: the fault suite against a local stack started as `make run` does.

    python -m chaos [--messages 10000] [--fuzz-frames 100000] [--timing fast] [--json FILE]

1. The frame fuzzer (chaos/fuzzer.py), first, while nothing else moves: mutated frames of every
   route; 0 INTERNAL, 0 unanswered, 0 accepted, 0 dropped connections, 0 state changes.
2. The history checker (chaos/history.py): messages in direct chats and groups while connections
   drop, PostToConnection fails (500 / 429), the send, fan-out and delivery functions crash
   mid-batch (so SQS and the stream redeliver), and the pollers and the gateway restart; then
   every ACKed message must be stored once, reach every member device once, in one gapless order.
A short version of both runs inside `make test` (tests/integration/test_chaos.py).
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

from chaos.fuzzer import run_fuzzer
from chaos.history import as_dict, run_history
from chaos.state import snapshotter
from local_stack.child import RunningStack, start_local_stack


async def run_chaos(
    stack: RunningStack, messages: int, fuzz_frames: int
) -> tuple[list[str], dict[str, Any], bool]:
    """Both parts against `stack`: the report's lines, its figures, and whether all held."""
    # The fuzzer first, while nothing else moves: its check is that the stored state stays as it was.
    snapshot = snapshotter(stack.emulator_urls["dynamodb-local"], stack.emulator_urls["moto"])
    fuzz = await run_fuzzer(stack, fuzz_frames, snapshot=snapshot)
    print(*fuzz.lines(), sep="\n", flush=True)
    history = await run_history(stack, messages)
    print(*history.lines(), sep="\n", flush=True)
    figures = {
        "history": as_dict(history),
        "fuzz": {**vars(fuzz), "by_mutation": dict(fuzz.by_mutation), "answers": dict(fuzz.answers)},
    }
    return [*fuzz.lines(), *history.lines()], figures, history.ok and fuzz.ok


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--fuzz-frames", type=int, default=100_000)
    parser.add_argument("--timing", default="fast", help="CHAT_TIMING of the stack (fast or aws)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    log = Path(tempfile.mkdtemp(prefix="chat-chaos-")) / "local-stack.log"
    stack = start_local_stack(log, {"CHAT_LOG_LEVEL": "WARNING", "CHAT_TIMING": args.timing})
    print(f"chaos: local stack at {stack.url} (log {log})", flush=True)
    try:
        _, figures, ok = asyncio.run(run_chaos(stack, args.messages, args.fuzz_frames))
    finally:
        stack.stop()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    print("chaos: " + ("all held" if ok else "FAILED"), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
