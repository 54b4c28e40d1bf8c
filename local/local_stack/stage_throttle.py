"""API Gateway's stage throttle, as the local gateway applies it to the HTTP API: a token bucket of
the stage's burst, refilled at its rate (the same numbers the CDK stack deploys, from the wiring).
Over it, API Gateway answers 429 before any authorizer or function runs."""

from __future__ import annotations

import time
from collections.abc import Callable

from chat_backend import wiring


class StageThrottle:
    def __init__(self, rate: wiring.Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = float(rate.burst)
        self._at = clock()

    def admit(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self.rate.burst), self._tokens + (now - self._at) * self.rate.per_s)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
