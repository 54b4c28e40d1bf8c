"""What the event-source pollers (stream_poller.py, queue_poller.py) share: threads of their own
for their blocking AWS calls, and handing a batch to the function as Lambda's event source
mapping does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from chat_backend import wiring
from local_stack.invoker import Invoker

T = TypeVar("T")
ERROR_PAUSE_S = 0.5  # after a failed AWS call, before polling again (as Lambda does, it keeps polling)


class PollerThreads:
    """A poller's own threads for its blocking AWS calls. Long polls hold a thread for up to their
    wait time, so pollers must not share asyncio's default executor (a few threads on a small
    machine): one queue's idle long polls would stall every other poller."""

    def __init__(self, threads: int, name: str) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, call)


class BatchTarget:
    """The function a poller hands its batches to: the records as `{"Records": [...]}`, back the
    ids of those its answer reports failed (`batchItemFailures`)."""

    def __init__(self, invoker: Invoker, function: wiring.Function) -> None:
        self.invoker = invoker
        self.function = function

    async def failed_ids(self, records: list[dict[str, Any]], source: str) -> set[str]:
        """Raises FunctionError when the function failed as a whole (the Invoker's error)."""
        result = await self.invoker.invoke(self.function.name, {"Records": records}, source)
        return {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures") or []}
