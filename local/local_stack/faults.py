"""Faults the local stack can be told to inject, for tests of what AWS does when things break:

- `crash`: a function invocation dies right after one of its AWS calls completes (as a Lambda that
  times out or runs out of memory at that point: nothing after the call happens, and the caller
  gets API Gateway's "Internal server error"). E.g. the send function after it reserved a seq.
- `post`: PostToConnection to one device's connection fails (HTTP 500 or 429) or is accepted and
  silently never reaches the client (a lost push).

Tests set them through the stack's `/_local/faults` endpoint (see `RunningStack.inject_fault`);
each fault has a count of how many times it fires (-1: until cleared).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

_invocation = threading.local()  # which function the current thread is running (set by the Invoker)


def running(function: str | None) -> None:
    _invocation.function = function


@contextmanager
def running_as(function: str) -> Iterator[None]:
    """The calls made inside are `function`'s (its grants and crash faults apply to them)."""
    running(function)
    try:
        yield
    finally:
        running(None)


def current_function() -> str | None:
    return getattr(_invocation, "function", None)


PostFault = Literal["drop", "500", "429"]


class SimulatedCrash(BaseException):
    """Raised inside a function to end its invocation at once. A BaseException, so the function's
    own `except Exception` blocks cannot catch it: nothing after the crash point runs."""


@dataclass
class CrashFault:
    function: str  # the wiring's function name
    operation: str  # "<service>.<Operation>", e.g. "dynamodb.UpdateItem"
    contains: str  # a substring the call's parameters must contain (e.g. "headSeq"); "" matches any
    remaining: int
    # Firings shared by every worker process holding this fault (the count holds across them).
    shared: SharedCount | None = None

    def take(self) -> bool:
        """One firing, if any is left."""
        if self.shared is not None:
            return self.shared.take()
        if self.remaining == 0:
            return False
        self.remaining -= 1
        return True


class SharedCount:
    """A count of firings in shared memory (multiprocessing.Array slot): -1 is unlimited."""

    def __init__(self, array: Any, slot: int) -> None:
        self.array, self.slot = array, slot

    def take(self) -> bool:
        with self.array.get_lock():
            left = self.array[self.slot]
            if left == 0:
                return False
            if left > 0:
                self.array[self.slot] = left - 1
            return True


@dataclass
class PostFaultSpec:
    user_id: str
    device_id: str
    mode: PostFault
    remaining: int


class Faults:
    """The stack's current faults; thread-safe (functions run on many threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.crashes: list[CrashFault] = []
        self.posts: list[PostFaultSpec] = []
        self.fired = 0

    @staticmethod
    def parse(spec: dict[str, Any]) -> CrashFault | PostFaultSpec:
        """A fault from its JSON form; ValueError / KeyError when it is not one."""
        count = int(spec.get("count", 1))
        if spec["kind"] == "crash":
            return CrashFault(spec["function"], spec["operation"], spec.get("contains", ""), count)
        if spec["kind"] == "post":
            mode = spec.get("mode", "500")
            if mode not in ("drop", "500", "429"):
                raise ValueError(f"unknown post fault mode {mode!r}")
            return PostFaultSpec(spec["userId"], spec["deviceId"], mode, count)
        raise ValueError(f"unknown fault kind {spec['kind']!r}")

    def set(self, spec: dict[str, Any], shared: SharedCount | None = None) -> None:
        fault = self.parse(spec)
        if isinstance(fault, CrashFault):
            fault.shared = shared
        with self._lock:
            if isinstance(fault, CrashFault):
                self.crashes.append(fault)
            else:
                self.posts.append(fault)

    def clear(self) -> int:
        """Remove every fault; returns how many times faults fired since the last clear."""
        with self._lock:
            self.crashes.clear()
            self.posts.clear()
            fired, self.fired = self.fired, 0
            return fired

    def crash_due(self, function: str | None, operation: str, params: Any) -> bool:
        """Whether this call of `function` ends its invocation (consumes one firing)."""
        if function is None or not self.crashes:
            return False
        with self._lock:
            for fault in self.crashes:
                if (
                    fault.function == function
                    and fault.operation == operation
                    and fault.contains in repr(params)
                    and fault.take()
                ):
                    self.fired += 1
                    return True
        return False

    def install(self, events: Any) -> None:
        """botocore hooks on the functions' session: a crash fault ends the invocation right after
        the matching call has completed (its effect is stored; nothing after it happens)."""
        events.register("before-call", self._before_call)
        events.register("after-call", self._after_call)

    def _before_call(self, params: Any, context: dict[str, Any], **_: Any) -> None:
        if self.crashes:  # must return None (a value would replace the request)
            context["local_fault_params"] = params

    def _after_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        operation = f"{model.service_model.service_name}.{model.name}"
        if self.crash_due(current_function(), operation, context.get("local_fault_params")):
            raise SimulatedCrash(f"{current_function()} crashed after {operation}")

    def post_fault(self, user_id: str | None, device_id: str | None) -> PostFault | None:
        """The fault a post to this device's connection meets now, if any (consumes one firing)."""
        if not self.posts:
            return None
        with self._lock:
            for fault in self.posts:
                if fault.remaining != 0 and (fault.user_id, fault.device_id) == (user_id, device_id):
                    fault.remaining -= 1
                    self.fired += 1
                    return fault.mode
        return None
