"""The HTTP API's stage throttle in the local gateway (local_stack/stage_throttle.py): the burst the
CDK stack deploys, refilled at its rate, answered 429 before the token is even looked at."""

from __future__ import annotations

from typing import Any

import aiohttp

from chat_backend import wiring
from local_stack.gateway import Gateway
from local_stack.processes import free_port
from local_stack.stage_throttle import StageThrottle


def test_a_burst_is_admitted_then_refused_until_the_rate_refills_it() -> None:
    # Given a stage throttle of 3 at once, refilled at 2 a second, on a clock we move
    now = [0.0]
    throttle = StageThrottle(wiring.Rate(burst=3, per_s=2), clock=lambda: now[0])
    # When 4 requests come at once, Then 3 pass and the 4th is refused
    assert [throttle.admit() for _ in range(4)] == [True, True, True, False]
    # When half a second passes, Then one more passes (2 a second), and no more
    now[0] = 0.5
    assert [throttle.admit(), throttle.admit()] == [True, False]
    # And a long pause refills the burst, not beyond it
    now[0] = 100.0
    assert [throttle.admit() for _ in range(4)] == [True, True, True, False]


def test_the_local_gateway_throttles_with_the_wirings_stage_numbers() -> None:
    # Given the gateway as the local stack builds it / Then its throttle is the wiring's, which
    # cdk/chat_stack/http_api.py deploys (it builds the stage's ThrottleSettings from it)
    gateway = Gateway(invoker=None)  # type: ignore[arg-type]
    assert gateway.http_api.throttle.rate == wiring.HTTP_STAGE_THROTTLE


async def test_the_gateway_answers_429_past_the_stage_throttle_before_any_authorization() -> None:
    # Given a gateway whose HTTP stage admits 2 requests and refills slowly
    class NoInvoker:
        async def invoke(self, *args: Any) -> Any:
            raise AssertionError("nothing is invoked without a token")

    gateway = Gateway(NoInvoker(), http_throttle=wiring.Rate(burst=2, per_s=0.001))  # type: ignore[arg-type]
    port = free_port()
    await gateway.start(port)
    try:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(3):
                async with http.post(f"http://127.0.0.1:{port}/v1/send", json={"action": "send"}) as resp:
                    statuses.append((resp.status, (await resp.json())["message"]))
    finally:
        await gateway.stop()
    # When three come without a token, Then two are refused for the token, the third throttled
    assert statuses == [(401, "Unauthorized"), (401, "Unauthorized"), (429, "Too Many Requests")]
