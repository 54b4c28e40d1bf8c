"""The local stack's timing profiles: the aws profile's latencies reproduce their published
percentiles, the fast profile injects nothing, API calls take at least their AWS latency, and the
Lambda instance pool tells cold starts from warm ones."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from local_stack import timing
from local_stack.timing import (
    ApiCallLatency,
    ExecutionEnvironments,
    Latency,
    aws_profile,
    fast_profile,
    profile_from_env,
)
from tests.unit.helpers import FakeClock

DRAWS = 20_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def assert_close(actual: float, expected: float, tolerance: float) -> None:
    assert abs(actual - expected) <= tolerance * expected, (
        f"{actual:.1f} is not within {tolerance:.0%} of {expected}"
    )


class RecordingEvents:
    def __init__(self) -> None:
        self.registered: list[str] = []

    def register(self, event: str, handler: Any) -> None:
        self.registered.append(event)


def put_item_model() -> Any:
    return SimpleNamespace(name="PutItem", service_model=SimpleNamespace(service_name="dynamodb"))


@pytest.mark.parametrize(
    "latency", [timing.PUT_ITEM, timing.TRANSACT_WRITE_ITEMS, timing.COLD_START, timing.SQS_FIFO_PICKUP]
)
def test_the_lognormal_sampler_reproduces_its_p50_and_p99(latency: Latency) -> None:
    # Given a latency fitted by its p50 and p99 and a seeded generator
    rng = random.Random(1)
    # When it is drawn many times
    draws = [latency.sample_ms(rng) for _ in range(DRAWS)]
    # Then the draws have that p50 and p99, within 10%
    assert_close(percentile(draws, 0.50), latency.p50_ms, 0.10)
    assert_close(percentile(draws, 0.99), latency.p99_ms, 0.10)


def test_stream_propagation_plus_the_250_ms_polling_gives_the_measured_end_to_end_latency() -> None:
    # Given the aws profile, and a write landing at a uniformly random point of the shard's poll cycle
    profile = aws_profile(seed=2)
    phase = random.Random(3)
    interval_ms = timing.STREAM_POLL_INTERVAL_S * 1000
    # When records go from the producer's PutItem through propagation and the wait for the next poll
    totals = [
        timing.PRODUCER_CALL_MS + profile.stream_propagation_s() * 1000 + phase.uniform(0, interval_ms)
        for _ in range(DRAWS)
    ]
    # Then write -> handler start has the published p50 213 ms and p99 552 ms, within 15%
    assert_close(percentile(totals, 0.50), 213.0, 0.15)
    assert_close(percentile(totals, 0.99), 552.0, 0.15)


@pytest.mark.parametrize(("fifo", "p50_ms", "p99_ms"), [(False, 16.2, 105.0), (True, 28.1, 645.0)])
def test_sqs_pickup_plus_the_producers_send_gives_the_measured_latency(
    fifo: bool, p50_ms: float, p99_ms: float
) -> None:
    # Given the aws profile
    profile = aws_profile(seed=4)
    # When messages go from the producer's SendMessage through the pickup to the handler
    totals = [timing.PRODUCER_CALL_MS + profile.sqs_pickup_s(fifo) * 1000 for _ in range(DRAWS)]
    # Then the total has the published p50 and p99 (standard or FIFO), within 10%
    assert_close(percentile(totals, 0.50), p50_ms, 0.10)
    assert_close(percentile(totals, 0.99), p99_ms, 0.10)


def test_the_fast_profile_injects_no_delay_and_installs_no_hook() -> None:
    # Given the fast profile and a call hook with a fake clock
    profile = fast_profile()
    clock = FakeClock(1000.0)
    hook = ApiCallLatency(profile, clock=clock, sleep=clock.sleep)
    events = RecordingEvents()
    # When every delay is asked for, the hook is installed, and a call goes through it
    delays = [
        profile.stream_propagation_s(),
        profile.sqs_pickup_s(fifo=True),
        profile.sqs_pickup_s(fifo=False),
        profile.cold_start_s(),
        profile.route_overhead_s(),
        profile.api_call_s("dynamodb", "TransactWriteItems"),
    ]
    hook.install(events)
    context: dict[str, Any] = {}
    hook.before_call(context=context)
    hook.after_call(model=put_item_model(), context=context)
    # Then every delay is zero, nothing is registered, and nothing sleeps
    assert delays == [0.0] * len(delays)
    assert events.registered == []
    assert clock.sleeps == []
    assert profile.stream_poll_interval_s == 0.0
    assert profile.lambda_concurrency == 32


def test_a_fast_call_is_held_until_its_sampled_aws_latency() -> None:
    # Given the aws profile, a twin with the same seed to know the draw, and a fake clock
    expected_s = aws_profile(seed=5).api_call_s("dynamodb", "PutItem")
    clock = FakeClock(1000.0)
    hook = ApiCallLatency(aws_profile(seed=5), clock=clock, sleep=clock.sleep)
    # When a PutItem answers after 1 ms
    context: dict[str, Any] = {}
    started = clock()
    hook.before_call(context=context)
    clock.now += 0.001
    hook.after_call(model=put_item_model(), context=context)
    # Then the call took exactly the sampled latency (1 ms of its own plus the rest slept)
    assert expected_s > 0.001
    assert clock.now - started == pytest.approx(expected_s)
    assert clock.sleeps == [pytest.approx(expected_s - 0.001)]


def test_a_call_already_slower_than_its_aws_latency_gets_nothing_added() -> None:
    # Given the aws profile and a fake clock
    clock = FakeClock(1000.0)
    hook = ApiCallLatency(aws_profile(seed=6), clock=clock, sleep=clock.sleep)
    # When a PutItem takes 2 s in the emulator
    context: dict[str, Any] = {}
    hook.before_call(context=context)
    clock.now += 2.0
    hook.after_call(model=put_item_model(), context=context)
    # Then nothing sleeps
    assert clock.sleeps == []


class CannedBody:
    def stream(self, **_: Any) -> Any:
        yield b"{}"


def canned_answer(**_: Any) -> Any:
    """Answers every request without sending it (botocore's before-send event)."""
    headers = HTTPHeaders()
    headers["Content-Type"] = "application/x-amz-json-1.0"
    return AWSResponse("http://127.0.0.1:9/", 200, headers, CannedBody())


def test_the_hooks_fit_botocores_before_call_and_after_call_events() -> None:
    # Given the hooks installed on a boto3 session, as the local stack does, and no network
    expected_s = aws_profile(seed=7).api_call_s("dynamodb", "PutItem")
    clock = FakeClock(1000.0)
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
    )
    ApiCallLatency(aws_profile(seed=7), clock=clock, sleep=clock.sleep).install(session.events)
    client = session.client("dynamodb", endpoint_url="http://127.0.0.1:9")
    client.meta.events.register("before-send", canned_answer)
    # When the function writes an item
    client.put_item(TableName="table", Item={"k": {"S": "1"}})
    # Then the call was held for the PutItem latency drawn for it
    assert clock.sleeps == [pytest.approx(expected_s)]


def never_recycling(seed: int) -> tuple[FakeClock, ExecutionEnvironments]:
    """Execution environments on a fake clock, where a warm instance is never recycled."""
    clock = FakeClock(1000.0)
    return clock, ExecutionEnvironments(random.Random(seed), recycle_probability=0.0, clock=clock)


def invoke(pool: ExecutionEnvironments, function: str) -> bool:
    """One invocation, returned before the next: whether it was a cold start."""
    cold = pool.acquire(function)
    pool.release(function)
    return cold


def test_the_first_invocation_is_a_cold_start_and_an_immediate_second_is_warm() -> None:
    # Given a function with no instance yet
    clock, pool = never_recycling(8)
    # When it is invoked, and invoked again as soon as the first returns
    first = invoke(pool, "send")
    clock.now += 0.05
    second = invoke(pool, "send")
    # Then only the first is a cold start
    assert (first, second) == (True, False)
    assert pool.cold_starts["send"] == 1


def test_two_concurrent_invocations_need_two_instances() -> None:
    # Given a function with one warm, idle instance
    _, pool = never_recycling(9)
    invoke(pool, "send")
    # When two invocations run at once
    first = pool.acquire("send")
    second = pool.acquire("send")
    # Then the second starts a new instance (cold), and afterwards both are warm
    assert (first, second) == (False, True)
    pool.release("send")
    pool.release("send")
    assert [pool.acquire("send"), pool.acquire("send")] == [False, False]
    assert pool.cold_starts["send"] == 2


def test_an_instance_idle_past_the_reclaim_time_is_gone() -> None:
    # Given a function whose only instance has been idle for just over 10 minutes
    clock, pool = never_recycling(10)
    invoke(pool, "fanout")
    clock.now += timing.IDLE_RECLAIM_S + 1
    # When it is invoked
    cold = pool.acquire("fanout")
    # Then that is a cold start, and another function's count is untouched
    assert cold is True
    assert pool.cold_starts == {"fanout": 2}


def test_a_warm_instance_is_sometimes_recycled() -> None:
    # Given the aws recycle probability and one function invoked one at a time
    clock = FakeClock(1000.0)
    pool = ExecutionEnvironments(random.Random(11), clock=clock)
    # When it is invoked many times
    for _ in range(DRAWS):
        invoke(pool, "deliver")
        clock.now += 1.0
    # Then a few warm invocations were cold starts, well under 1%
    share = pool.cold_starts["deliver"] / DRAWS
    assert 0.0005 < share < 0.01


@pytest.mark.parametrize("value", ["slow", "AWS-ish", "1"])
def test_an_unknown_timing_profile_is_refused(value: str) -> None:
    # Given CHAT_TIMING set to something that is not a profile
    env = {"CHAT_TIMING": value}
    # When the profile is read, Then it is refused, naming the variable and the choices
    with pytest.raises(ValueError, match=r"CHAT_TIMING=.*fast, aws"):
        profile_from_env(env)


def test_the_stack_config_refuses_an_unknown_profile_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the stack's environment asking for an unknown profile
    from local_stack.stack import LocalStackConfig

    monkeypatch.setenv("CHAT_TIMING", "slow")
    # When the stack reads its config, Then it stops with the message
    with pytest.raises(SystemExit, match="CHAT_TIMING='slow' is not a timing profile"):
        LocalStackConfig.from_env()


def test_the_default_is_fast_and_aws_raises_the_lambda_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the stack's config read with no CHAT_TIMING, then with CHAT_TIMING=aws and a seed
    from local_stack.stack import LocalStackConfig

    monkeypatch.delenv("CHAT_TIMING", raising=False)
    default = LocalStackConfig.from_env()
    monkeypatch.setenv("CHAT_TIMING", "aws")
    monkeypatch.setenv("CHAT_TIMING_SEED", "42")
    aws = LocalStackConfig.from_env()
    # Then the default is today's behaviour, and aws polls streams at 4/s with 64 per worker
    assert (default.timing.name, default.lambda_concurrency, default.timing.enabled) == ("fast", 32, False)
    assert (aws.timing.name, aws.lambda_concurrency, aws.timing.stream_poll_interval_s) == ("aws", 64, 0.25)
    assert aws.timing.cold_start_s() == aws_profile(seed=42).cold_start_s()
