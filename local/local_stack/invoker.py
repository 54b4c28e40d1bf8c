"""Runs the functions of the wiring table the way Lambda would: in processes of their own
(`lambda_worker.py`, each serving many invocations at once, as many warm instances would), from
the same handler files that deploy. This side keeps Lambda's instance pool (cold starts: the aws
timing waits for them), one log line per invocation (function, route or trigger, duration,
outcome), and the duration profile; the AWS call counts and the injected faults live in the
workers, where the functions' boto3 calls are made, and are gathered or set through them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import threading
from collections import defaultdict
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from local_stack.lambda_worker import WorkerConfig, serve
from local_stack.timing import ExecutionEnvironments, TimingProfile, fast_profile

log = logging.getLogger("local_stack.invoke")
FAULT_SLOTS = 64


class FunctionError(RuntimeError):
    """The handler raised, or its invocation died (Lambda's function error)."""


class _Worker:
    """One worker process and the invocations waiting on it."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.send_lock = threading.Lock()


class Invoker:
    def __init__(self, processes: int = 2, threads: int = 64, timing: TimingProfile | None = None) -> None:
        self.timing = timing or fast_profile()
        # Which invocations would be cold starts (counted in every profile; only aws waits for them).
        self.environments = ExecutionEnvironments(self.timing.child_rng())
        self.invocations = 0
        self.errors = 0
        self.durations_ms: dict[str, list[float]] = defaultdict(list)  # function -> per invocation
        self._ids = itertools.count()
        context = multiprocessing.get_context("spawn")
        # Injected crash faults fire a set number of times in all: their counts are shared.
        self._fault_counts = context.Array("i", FAULT_SLOTS)
        self._fault_slots = itertools.count()
        self._workers = [self._spawn(threads) for _ in range(max(1, processes))]
        self._loop: asyncio.AbstractEventLoop | None = None

    def _spawn(self, threads: int) -> _Worker:
        """A worker process started afresh (spawn, not fork: this process already runs threads),
        with the environment as it is now: the emulators' endpoints and the resources' names."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        config = WorkerConfig(
            threads=threads, timing=self.timing.name, seed=self.timing.child_rng().getrandbits(32)
        )
        process = context.Process(
            target=serve, args=(theirs, config, self._fault_counts), name="lambda-worker", daemon=True
        )
        process.start()
        theirs.close()
        worker = _Worker(process, ours)
        threading.Thread(target=self._read, args=(worker,), name="lambda-worker-reader", daemon=True).start()
        return worker

    # --- invocations -------------------------------------------------------------------------------

    async def invoke(self, function: str, event: dict[str, Any], source: str) -> Any:
        """Raises FunctionError when the handler raised or the invocation died."""
        self._loop = asyncio.get_running_loop()
        cold = self.environments.acquire(function)
        try:
            if cold and (init_s := self.timing.cold_start_s()) > 0:
                # Init happens before the handler and is not part of its Duration, as on Lambda.
                await asyncio.sleep(init_s)
            ok, result, duration_ms = await self._call(self._least_busy(), "invoke", function, event)
        finally:
            self.environments.release(function)
        self.invocations += 1
        self.durations_ms[function].append(duration_ms)
        if not ok:
            self.errors += 1
            log.warning("%s %s %.1f ms error: %s", function, source, duration_ms, result)
            raise FunctionError(result)
        log.info("%s %s %.1f ms %s", function, source, duration_ms, _outcome(result))
        return result

    def _least_busy(self) -> _Worker:
        return min(self._workers, key=lambda w: len(w.pending))

    async def _call(self, worker: _Worker, kind: str, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        request_id = next(self._ids)
        future: asyncio.Future[Any] = loop.create_future()
        worker.pending[request_id] = future
        try:
            with worker.send_lock:
                worker.conn.send((kind, request_id, *args))
            return await future
        finally:
            worker.pending.pop(request_id, None)

    def _read(self, worker: _Worker) -> None:
        """The worker's answers, handed to the event loop (one thread per worker). Should the
        worker die, what waited on it fails as a function error (as Lambda's would)."""
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                loop = self._loop
                for future in list(worker.pending.values()):
                    if loop is not None:
                        loop.call_soon_threadsafe(
                            _settle, future, (False, "Runtime exited: worker died", 0.0)
                        )
                return
            waiting = worker.pending.get(message[1])
            loop = self._loop
            if waiting is None or loop is None:
                continue
            answer = tuple(message[2:]) if message[0] == "result" else message[2]
            loop.call_soon_threadsafe(_settle, waiting, answer)

    # --- what lives in the workers ---------------------------------------------------------------

    async def inject_crash(self, spec: dict[str, Any]) -> None:
        """A crash fault for every worker, firing `count` times in all (-1: until cleared)."""
        slot = next(self._fault_slots) % FAULT_SLOTS
        self._fault_counts[slot] = int(spec.get("count", 1))
        await self.control("fault", (spec, slot))

    async def control(self, op: str, payload: Any = None) -> list[Any]:
        """Ask every worker (stats, reset, fault, clear_faults); their answers in worker order."""
        self._loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(self._call(w, "control", op, payload) for w in self._workers)))

    async def call_stats(self) -> dict[str, Any]:
        """The functions' AWS calls, write units and SQS messages sent, summed over the workers."""
        calls: defaultdict[str, int] = defaultdict(int)
        units: defaultdict[str, float] = defaultdict(float)
        sqs = 0
        for snapshot in await self.control("stats"):
            for key, n in snapshot["calls"].items():
                calls[key] += n
            for key, u in snapshot["write_units"].items():
                units[key] += u
            sqs += snapshot["sqs_messages_sent"]
        return {"calls": dict(calls), "write_units": dict(units), "sqs_messages_sent": sqs}

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

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def close(self) -> None:
        for worker in self._workers:
            try:
                with worker.send_lock:
                    worker.conn.send(("stop",))
            except (OSError, ValueError):
                pass
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
            worker.conn.close()


def _settle(future: asyncio.Future[Any], answer: Any) -> None:
    if not future.done():
        future.set_result(answer)


def _outcome(result: Any) -> str:
    if isinstance(result, dict):
        if failures := result.get("batchItemFailures"):
            return f"partial failure ({len(failures)} items)"
        if body := result.get("body"):
            return body[:80] if '"ERROR"' in body else f"ok {body[:30]}"
        if "policyDocument" in result:
            return "allow" if "Allow" in str(result["policyDocument"]) else "deny"
    return "ok"
