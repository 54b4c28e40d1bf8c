"""One Lambda worker process of the local stack: runs the functions' handlers, as Lambda runs each
instance in a process of its own (no interpreter lock shared with the gateway or other instances).

The process loads every handler from the same `functions/<name>/handler.py` files that deploy,
instruments the functions' boto3 session (AWS call counter, the timing profile's call latencies,
injected crash faults), and serves requests from the Invoker over a pipe: invocations run on a
thread pool (many concurrent invocations, as many instances would), control requests (stats,
faults) are answered at once.

Messages: ("invoke", id, function, event) -> ("result", id, ok, result or error, duration ms);
("control", id, op, payload) -> ("control", id, answer); ("stop",).
"""

from __future__ import annotations

import importlib.util
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import ModuleType
from typing import Any

from chat_backend import wiring
from local_stack import faults
from local_stack.aws_calls import AwsCallCounter
from local_stack.iam import AccessGuard
from local_stack.logs import configure_logging
from local_stack.processes import REPO
from local_stack.timing import ApiCallLatency, profile


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


@dataclass(frozen=True)
class WorkerConfig:
    threads: int
    timing: str  # the profile's name
    seed: int  # this worker's own, so its sampled latencies are independent of the others'


def load_handler(name: str) -> ModuleType:
    path = REPO / "functions" / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"functions_{name}_handler", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    modules = {fn.name: load_handler(fn.name) for fn in wiring.FUNCTIONS}
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
        faults.running(function)
        try:
            result = modules[function].handler(event, context)
            outcome: tuple[bool, Any] = (True, result)
        except faults.SimulatedCrash as crash:  # what Lambda reports when an invocation dies mid-way
            outcome = (False, f"Runtime exited: {crash}")
        except Exception as exc:
            outcome = (False, repr(exc))
        finally:
            faults.running(None)
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
