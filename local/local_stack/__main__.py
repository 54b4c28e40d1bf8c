"""`make run`: start the local stack, say where it listens, stop cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal

from local_stack.logs import configure_logging
from local_stack.stack import LocalStack, LocalStackConfig


async def serve(config: LocalStackConfig) -> None:
    stack = LocalStack(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stack.start()
        print(
            f"chat local stack listening on {stack.url} (emulators: {stack.status()}) "
            f"data: {stack.data_description()}",
            flush=True,
        )
        await stop.wait()
    finally:
        await stack.stop()
        print("chat local stack stopped", flush=True)


def main() -> None:
    configure_logging()
    # The functions' own structured logs: quieter than the one line per invocation.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", os.environ.get("CHAT_FUNCTION_LOG_LEVEL", "WARNING"))
    # Metrics are recorded but not printed (one EMF blob per invocation on stdout is noise here);
    # POWERTOOLS_METRICS_DISABLED=false shows them as CloudWatch would receive them.
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    asyncio.run(serve(LocalStackConfig.from_env()))


if __name__ == "__main__":
    main()
