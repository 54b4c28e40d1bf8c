"""One Lambda worker process of the local stack: runs the functions' handlers, as Lambda runs each
instance in a process of its own (no interpreter lock shared with the gateway or other instances).

The process loads every handler from the same `functions/<name>/handler.py` files that deploy
(lambda_runtime.py), instruments the functions' boto3 session (AWS call counter, the timing
profile's call latencies, injected crash faults), and serves requests from the Invoker over a
pipe: invocations run on a thread pool (many concurrent invocations, as many instances would),
control requests (stats, faults) are answered at once.

Messages: ("invoke", id, function, event) -> ("result", id, ok, result or error, duration ms);
("control", id, op, payload) -> ("control", id, answer); ("stop",).
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from chat_backend import wiring
from local_stack import faults
from local_stack.aws_calls import AwsCallCounter
from local_stack.iam import AccessGuard
from local_stack.lambda_runtime import LocalLambdaContext, load_functions
from local_stack.logs import configure_logging
from local_stack.timing import ApiCallLatency, profile


@dataclass(frozen=True)
class WorkerConfig:
    threads: int
    timing: str  # the profile's name
    seed: int  # this worker's own, so its sampled latencies are independent of the others'


def serve(conn: Connection, config: WorkerConfig, fault_counts: Any) -> None:
    """The worker process's main: until told to stop (or the Invoker goes away)."""
    # Ctrl-C reaches the whole process group: the stack stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging()
    from chat_backend.dal import aws as functions_aws  # after the environment is final

    events = functions_aws.session().events
    counter = AwsCallCounter()
    counter.install(events)
    ApiCallLatency(profile(config.timing, config.seed)).install(events)
    worker_faults = faults.Faults()
    worker_faults.install(events)
    AccessGuard().install(events)
    modules = load_functions()
    pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="lambda")
    send_lock = threading.Lock()

    def reply(message: tuple[Any, ...]) -> None:
        with send_lock:
            conn.send(message)

    def invoke(request_id: int, function: str, event: dict[str, Any]) -> None:
        fn = wiring.function(function)
        context = LocalLambdaContext(
            function, str(uuid.uuid4()), fn.memory_mb, fn.timeout_s, time.monotonic()
        )
        outcome: tuple[bool, Any]
        try:
            with faults.running_as(function):
                outcome = (True, modules[function].handler(event, context))
        except faults.SimulatedCrash as crash:  # what Lambda reports when an invocation dies mid-way
            outcome = (False, f"Runtime exited: {crash}")
        except Exception as exc:
            outcome = (False, repr(exc))
        reply(("result", request_id, *outcome, (time.monotonic() - context.started) * 1000))

    def control(op: str, payload: Any) -> Any:
        if op == "stats":
            return counter.snapshot()
        if op == "reset":
            counter.reset()
        elif op == "fault":  # (spec, slot): its firings are counted in the slot, across workers
            spec, slot = payload
            worker_faults.set(spec, faults.SharedCount(fault_counts, slot))
        elif op == "clear_faults":
            return worker_faults.clear()
        return None

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message[0] == "invoke":
            pool.submit(invoke, *message[1:])
        elif message[0] == "control":
            reply(("control", message[1], control(message[2], message[3])))
        else:
            break
    pool.shutdown(wait=False, cancel_futures=True)
