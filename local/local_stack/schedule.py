"""Scheduled functions (wiring.ScheduleTrigger), as EventBridge runs them: every `rate_minutes` an
invocation with a scheduled event whose `time` is the function's "now". `fire` sends the same event
at once, with any time (tests: "31 days from now"), through the same invoker and wiring entry."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from chat_backend import wiring
from chat_backend.models.common import iso_at
from local_stack.invoker import FunctionError, Invoker

log = logging.getLogger("local_stack.schedule")


def scheduled_event(function: str, at_s: float, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """EventBridge's "Scheduled Event" shape (the rule's ARN named after the function)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": iso_at(int(at_s)).replace(".000Z", "Z"),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:000000000000:rule/{function}-schedule"],
        "detail": detail or {},
    }


class SchedulePoller:
    def __init__(self, invoker: Invoker, function: wiring.Function, trigger: wiring.ScheduleTrigger) -> None:
        self.invoker = invoker
        self.function = function
        self.trigger = trigger

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.trigger.rate_minutes * 60)
            try:
                await self.fire(time.time())
            except FunctionError as exc:  # as EventBridge: logged, tried again at the next tick
                log.warning("%s: scheduled run failed: %s", self.function.name, exc)

    async def fire(self, at_s: float, detail: dict[str, Any] | None = None) -> Any:
        event = scheduled_event(self.function.name, at_s, detail)
        return await self.invoker.invoke(self.function.name, event, "schedule")
