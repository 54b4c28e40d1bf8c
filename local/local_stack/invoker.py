"""Runs the functions of the wiring table in-process, from the same handler files that deploy,
the way Lambda would: a fresh module per function, a context object, one log line per
invocation (function, route or trigger, duration, outcome)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from chat_backend import wiring
from local_stack import faults
from local_stack.processes import REPO
from local_stack.timing import ExecutionEnvironments, TimingProfile, fast_profile

log = logging.getLogger("local_stack.invoke")


@dataclass
class LocalLambdaContext:
    """The attributes of Lambda's context object that powertools reads."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int
    timeout_s: int
    started: float

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started + self.timeout_s - time.monotonic()) * 1000))


def load_handler(name: str) -> ModuleType:
    path = REPO / "functions" / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"functions_{name}_handler", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Invoker:
    def __init__(self, max_concurrency: int = 32, timing: TimingProfile | None = None) -> None:
        self.pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="lambda")
        self.timing = timing or fast_profile()
        # Which invocations would be cold starts (counted in every profile; only aws waits for them).
        self.environments = ExecutionEnvironments(self.timing.child_rng())
        self.modules = {fn.name: load_handler(fn.name) for fn in wiring.FUNCTIONS}
        self.invocations = 0
        self.errors = 0
        self.durations_ms: dict[str, list[float]] = defaultdict(list)  # function -> per invocation

    async def invoke(self, function: str, event: dict[str, Any], source: str) -> Any:
        """Raises what the handler raised (as Lambda reports a function error)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self.invoke_sync, function, event, source)

    def invoke_sync(self, function: str, event: dict[str, Any], source: str) -> Any:
        cold = self.environments.acquire(function)
        try:
            if cold and (init_s := self.timing.cold_start_s()) > 0:
                # Init happens before the handler and is not part of its Duration, as on Lambda.
                log.debug("%s cold start %.0f ms", function, init_s * 1000)
                time.sleep(init_s)
            return self._run(function, event, source)
        finally:
            self.environments.release(function)

    def _run(self, function: str, event: dict[str, Any], source: str) -> Any:
        fn = wiring.function(function)
        context = LocalLambdaContext(
            function_name=function,
            aws_request_id=str(uuid.uuid4()),
            memory_limit_in_mb=fn.memory_mb,
            timeout_s=fn.timeout_s,
            started=time.monotonic(),
        )
        self.invocations += 1
        faults.running(function)
        try:
            result = self.modules[function].handler(event, context)
        except faults.SimulatedCrash as crash:
            # What Lambda reports for an invocation that died mid-way (timeout, out of memory).
            self.errors += 1
            log.warning("%s %s %.1f ms crashed: %s", function, source, _ms(context), crash)
            raise RuntimeError(f"Runtime exited: {crash}") from None
        except Exception as exc:
            self.errors += 1
            log.warning("%s %s %.1f ms error: %r", function, source, _ms(context), exc)
            raise
        finally:
            faults.running(None)
            self.durations_ms[function].append(_ms(context))
        log.info("%s %s %.1f ms %s", function, source, _ms(context), _outcome(result))
        return result

    def duration_summary(self) -> dict[str, dict[str, float]]:
        """Per function: invocations, duration percentiles (ms, the local stack's profile) and cold
        starts (invocations that found no idle warm instance; only the aws timing waits for them)."""
        summary = {}
        for function, durations in list(self.durations_ms.items()):
            ordered = sorted(durations)
            summary[function] = {
                "count": len(ordered),
                "total_ms": round(sum(ordered), 1),
                "p50_ms": round(ordered[len(ordered) // 2], 2),
                "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
                "cold_starts": self.environments.cold_starts[function],
            }
        return summary

    def reset_stats(self) -> None:
        self.durations_ms.clear()
        self.environments.cold_starts.clear()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _ms(context: LocalLambdaContext) -> float:
    return (time.monotonic() - context.started) * 1000


def _outcome(result: Any) -> str:
    if isinstance(result, dict):
        if failures := result.get("batchItemFailures"):
            return f"partial failure ({len(failures)} items)"
        if body := result.get("body"):
            return body[:80] if '"ERROR"' in body else f"ok {body[:30]}"
        if "policyDocument" in result:
            return "allow" if "Allow" in str(result["policyDocument"]) else "deny"
    return "ok"
