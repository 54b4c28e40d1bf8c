"""What the local Lambda runtime gives the functions in a worker process (lambda_worker.py): their
handlers, loaded from the same `functions/<name>/handler.py` files that deploy, and the context
object Lambda passes each invocation."""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from types import ModuleType

from chat_backend import wiring
from local_stack import concurrent_metrics
from local_stack.processes import REPO

ACCOUNT = "000000000000"


@dataclass
class LocalLambdaContext:
    """The attributes of Lambda's context object that powertools reads."""

    function_name: str
    aws_request_id: str
    memory_limit_in_mb: int
    timeout_s: int
    started: float  # time.monotonic() at the invocation's start
    function_version: str = "$LATEST"
    log_stream_name: str = "local"
    invoked_function_arn: str = field(init=False)
    log_group_name: str = field(init=False)

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"

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


def load_functions() -> dict[str, ModuleType]:
    """Every function's handler module, by function name. This process runs many invocations at
    once, where Lambda runs one per instance: the functions' Metrics are adapted for that
    (concurrent_metrics.py) before the handlers load and bind them."""
    from chat_backend import observability  # after the environment is final: it reads it

    concurrent_metrics.install(observability.metrics)
    return {fn.name: load_handler(fn.name) for fn in wiring.FUNCTIONS}
