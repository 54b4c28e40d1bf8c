"""Waiting between attempts: the one backoff of every retry and poll loop of the package.

Exponential: the wait before retry `attempt` (0 for the first) is `first_s * 2**attempt`, at most
`max_s`. With `jitter` ("full jitter") the wait is drawn uniformly below that, so writers that
collided once do not collide again in step; without it, the wait is exactly that (a poll).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Backoff:
    first_s: float
    max_s: float
    jitter: bool = True

    def delay_s(self, attempt: int) -> float:
        ceiling = min(self.max_s, self.first_s * 2 ** min(attempt, 32))  # a long poll never overflows
        return random.uniform(0, ceiling) if self.jitter else ceiling

    def pause(self, attempt: int, sleep: Sleep | None = None) -> None:
        """Wait before retry `attempt` (with `sleep`: a test's clock, or time.sleep)."""
        (sleep or time.sleep)(self.delay_s(attempt))
