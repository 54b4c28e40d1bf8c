"""Timing profiles of the local stack: `CHAT_TIMING=fast` (the default: no injected delays) or
`CHAT_TIMING=aws` (each emulated hop takes about what it takes on AWS). Every figure of the aws
profile is here, with its source; docs/TIMING.md says what is modelled and what is not.

Latencies are lognormal, fitted by their p50 and p99 (sigma = ln(p99 / p50) / z(0.99)). Where no
published figure exists the comment says "estimate" and what it rests on.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Z99 = 2.3263478740408408  # the standard normal's 99th percentile

PROFILES = ("fast", "aws")
TIMING_ENV = "CHAT_TIMING"
SEED_ENV = "CHAT_TIMING_SEED"


@dataclass(frozen=True)
class Latency:
    """A lognormal latency with the given median and 99th percentile (ms)."""

    p50_ms: float
    p99_ms: float

    @property
    def sigma(self) -> float:
        return math.log(self.p99_ms / self.p50_ms) / Z99 if self.p50_ms > 0 else 0.0

    def sample_ms(self, rng: random.Random) -> float:
        if self.p50_ms <= 0:
            return 0.0
        return self.p50_ms * math.exp(self.sigma * rng.normalvariate(0.0, 1.0))

    def sample_s(self, rng: random.Random) -> float:
        return self.sample_ms(rng) / 1000.0


# --- Event sources ------------------------------------------------------------------------------

# The producer's own call (PutItem / SendMessage, ~7 ms) is inside the end-to-end figures below;
# here the functions' calls take their own latency (API_CALLS), so it is subtracted.
# PutItem p50 7.55 ms (alexdebrie, below); SendMessage "5-10 ms" server time (AWS Support, quoted
# in github.com/aws/aws-sdk-js/issues/3391).
PRODUCER_CALL_MS = 7.0

# DynamoDB Streams -> Lambda, write to handler start: p10 118, p50 213, p90 341, p99 552 ms
# (bitesizedserverless.com "Serverless messaging latency compared", eu-west-1, Sept 2022).
STREAM_END_TO_END = Latency(213.0, 552.0)
# "Lambda polls shards in your DynamoDB stream for records at a base rate of 4 times per second"
# (docs.aws.amazon.com/lambda/latest/dg/with-ddb.html, "Polling and batching streams").
STREAM_POLL_INTERVAL_S = 0.25
# Calibrated (tests/unit/test_timing.py checks it by Monte Carlo): a record becomes visible to the
# poller this long after it is seen, then waits for the shard's next poll (uniform in 0-250 ms);
# propagation + poll wait has p50 206 / p99 545 ms = STREAM_END_TO_END minus PRODUCER_CALL_MS
# (p10 85 and p90 336 ms come out, against 111 and 334 measured).
STREAM_PROPAGATION = Latency(65.0, 397.0)

# SQS -> Lambda, SendMessage to handler start (same bitesizedserverless.com article):
# standard p10 13.7, p50 16.2, p90 33.8, p99 105 ms; FIFO p10 21.9, p50 28.1, p90 61.2, p99 645 ms.
# The pickup is the figure minus PRODUCER_CALL_MS, counted from the message's SentTimestamp.
SQS_STANDARD_END_TO_END = Latency(16.2, 105.0)
SQS_FIFO_END_TO_END = Latency(28.1, 645.0)
SQS_STANDARD_PICKUP = Latency(16.2 - PRODUCER_CALL_MS, 105.0 - PRODUCER_CALL_MS)
SQS_FIFO_PICKUP = Latency(28.1 - PRODUCER_CALL_MS, 645.0 - PRODUCER_CALL_MS)

# --- Lambda ------------------------------------------------------------------------------------

# Cold start (init + provisioning), an estimate for these functions (powertools Logger, Metrics,
# Tracer and parser, pydantic, boto3) from: "Cold starts typically occur in under 1% of
# invocations. The duration of a cold start varies from under 100 ms to over 1 second"
# (docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html); Python 3.13 arm64 hello
# world init ~80 ms (github.com/maxday/lambda-perf); powertools Logger only ~144 ms, with Parser
# ~444 ms, p99 471 (github.com/aws-powertools/powertools-lambda-python/issues/1164); py3.12 arm64
# 1024 MB with a layer 209-220 ms (github.com/DataDog/datadog-lambda-python PR #1284); plus ~80 ms
# of provisioning outside Init Duration (Yan Cui, Lumigo, 2020).
COLD_START = Latency(450.0, 800.0)
# "every instance lives for precisely 10 minutes after the last request" (mikhail.io, 2019,
# "Cold starts in AWS Lambda").
IDLE_RECLAIM_S = 600.0
# A warm instance was recycled anyway (estimate: keeps the steady-state cold share "under 1%").
RECYCLE_PROBABILITY = 0.002
# Concurrent invocations per Lambda worker process (the default account concurrency is 1,000).
# With the functions' own pool of 32 threads for parallel pushes, 32 keeps a worker's concurrent
# HTTP calls within its boto3 connection pool (64): beyond it every call opens and drops a TCP
# connection. Under aws timing a sleeping call holds no connection, so more invocations fit.
AWS_LAMBDA_CONCURRENCY = 64
FAST_LAMBDA_CONCURRENCY = 32

# --- API Gateway WebSocket ---------------------------------------------------------------------

# A client frame reaching the gateway until the route's Lambda is invoked. Estimate: no WebSocket
# figure is published; dev.to "The hidden serverless latency" gives REST/HTTP API overhead 10-20 ms.
ROUTE_OVERHEAD = Latency(15.0, 50.0)

# --- AWS API calls made by the functions -------------------------------------------------------

# github.com/alexdebrie/dynamodb-performance-testing README, Lambda in us-east-1:
# "PutItem | 5.47 | 7.55 | 11.3 | 13.2 | 16.2 | 29" (p10 p50 p90 p95 p99 max).
PUT_ITEM = Latency(7.55, 16.2)
# tecracer.com (2021) "complexity costs read performance for nested DynamoDB items": p50 ~5 ms for
# a 4 KB item from a Lambda of >= 640 MB; p99 12 ms is an estimate.
GET_ITEM = Latency(5.0, 12.0)
# Estimate: GetItem + ~1 ms.
QUERY = Latency(6.0, 14.0)
# alexdebrie: "BatchWriteItem - 5 items" p50 8.14, p99 25.5.
BATCH_WRITE_ITEM = Latency(8.14, 25.5)
# Estimate, by analogy with BatchWriteItem-5 against PutItem in the alexdebrie table.
BATCH_GET_ITEM = Latency(8.0, 25.0)
# alexdebrie: "TransactWrite - 5 items | 19.4 | 25.3 | 30.7 | 36.4 | 92.5 | 218".
TRANSACT_WRITE_ITEMS = Latency(25.3, 92.5)
# Estimate: AWS Support, quoted in github.com/aws/aws-sdk-js/issues/3391: "actual processing time
# on their servers is between 5-10 ms"; the SQS standard end-to-end p50 of 16.2 ms bounds it.
SQS_CALL = Latency(7.0, 40.0)
# Estimate: no published figure. A regional HTTPS call like DynamoDB's plus the API Gateway hop
# (dev.to "The hidden serverless latency": API Gateway REST/HTTP overhead 10-20 ms).
POST_TO_CONNECTION = Latency(15.0, 60.0)

API_CALLS: dict[str, Latency] = {
    "dynamodb.PutItem": PUT_ITEM,
    "dynamodb.UpdateItem": PUT_ITEM,  # estimate: the same write path as PutItem
    "dynamodb.DeleteItem": PUT_ITEM,  # estimate: the same write path as PutItem
    "dynamodb.GetItem": GET_ITEM,
    "dynamodb.Query": QUERY,
    "dynamodb.BatchGetItem": BATCH_GET_ITEM,
    "dynamodb.BatchWriteItem": BATCH_WRITE_ITEM,
    "dynamodb.TransactWriteItems": TRANSACT_WRITE_ITEMS,
}
# Any other call of these services; any other service (S3 presigning makes no call): PutItem's.
SERVICE_DEFAULTS: dict[str, Latency] = {
    "sqs": SQS_CALL,
    "apigatewaymanagementapi": POST_TO_CONNECTION,
}
DEFAULT_API_CALL = PUT_ITEM


def api_call_latency(service: str, operation: str) -> Latency:
    return API_CALLS.get(f"{service}.{operation}") or SERVICE_DEFAULTS.get(service) or DEFAULT_API_CALL


# --- Profiles ----------------------------------------------------------------------------------


@dataclass
class TimingProfile:
    """What each emulated hop adds. In the fast profile every delay is zero (`enabled` is False)."""

    name: str
    enabled: bool
    rng: random.Random = field(default_factory=random.Random)
    stream_poll_interval_s: float = 0.0  # 0: the stack's own idle sleep between polls
    lambda_concurrency: int = FAST_LAMBDA_CONCURRENCY
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _sample_s(self, latency: Latency) -> float:
        if not self.enabled:
            return 0.0
        with self._lock:  # called from the functions' threads and the event loop
            return latency.sample_s(self.rng)

    def child_rng(self) -> random.Random:
        """An independent generator, derived from this one (a seeded profile stays reproducible)."""
        with self._lock:
            return random.Random(self.rng.getrandbits(64))

    def stream_propagation_s(self) -> float:
        return self._sample_s(STREAM_PROPAGATION)

    def sqs_pickup_s(self, fifo: bool) -> float:
        return self._sample_s(SQS_FIFO_PICKUP if fifo else SQS_STANDARD_PICKUP)

    def cold_start_s(self) -> float:
        return self._sample_s(COLD_START)

    def route_overhead_s(self) -> float:
        return self._sample_s(ROUTE_OVERHEAD)

    def api_call_s(self, service: str, operation: str) -> float:
        return self._sample_s(api_call_latency(service, operation))


def fast_profile(seed: int | None = None) -> TimingProfile:
    return TimingProfile(name="fast", enabled=False, rng=random.Random(seed))


def aws_profile(seed: int | None = None) -> TimingProfile:
    return TimingProfile(
        name="aws",
        enabled=True,
        rng=random.Random(seed),
        stream_poll_interval_s=STREAM_POLL_INTERVAL_S,
        lambda_concurrency=AWS_LAMBDA_CONCURRENCY,
    )


def profile(name: str, seed: int | None = None) -> TimingProfile:
    if name == "fast":
        return fast_profile(seed)
    if name == "aws":
        return aws_profile(seed)
    raise ValueError(f"{TIMING_ENV}={name!r} is not a timing profile: use one of {', '.join(PROFILES)}")


def profile_from_env(env: Mapping[str, str] | None = None) -> TimingProfile:
    """`CHAT_TIMING` (fast by default) and `CHAT_TIMING_SEED`; raises ValueError on a bad value."""
    env = os.environ if env is None else env
    name = env.get(TIMING_ENV, "").strip().lower() or "fast"
    raw_seed = env.get(SEED_ENV, "").strip()
    try:
        seed = int(raw_seed) if raw_seed else None
    except ValueError:
        raise ValueError(f"{SEED_ENV}={raw_seed!r} is not an integer") from None
    return profile(name, seed)


# --- The functions' AWS calls ------------------------------------------------------------------

_STARTED = "local_stack.timing.started"


class ApiCallLatency:
    """botocore hooks on the functions' session: a call takes at least its sampled AWS latency
    (the emulator's own time counts towards it; a call that was already slower gets nothing)."""

    def __init__(
        self,
        timing: TimingProfile,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.timing = timing
        self.clock = clock
        self.sleep = sleep

    def install(self, events: Any) -> None:
        if not self.timing.enabled:
            return
        events.register("before-call", self.before_call)
        events.register("after-call", self.after_call)

    def before_call(self, context: dict[str, Any], **_: Any) -> None:
        # Must return None: a before-call handler's return value would replace the request.
        if self.timing.enabled:
            context[_STARTED] = self.clock()

    def after_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        started = context.get(_STARTED)
        if not self.timing.enabled or started is None:
            return
        target_s = self.timing.api_call_s(model.service_model.service_name, model.name)
        remaining_s = target_s - (self.clock() - started)
        if remaining_s > 0:
            self.sleep(remaining_s)


# --- Lambda execution environments ------------------------------------------------------------


class ExecutionEnvironments:
    """Lambda's instances per function: an invocation takes an idle warm instance if there is one,
    else a new one starts (a cold start). An instance idle for over `idle_reclaim_s` is reclaimed,
    and a warm one is recycled with probability `recycle_probability` (also a cold start)."""

    def __init__(
        self,
        rng: random.Random,
        idle_reclaim_s: float = IDLE_RECLAIM_S,
        recycle_probability: float = RECYCLE_PROBABILITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rng = rng
        self.idle_reclaim_s = idle_reclaim_s
        self.recycle_probability = recycle_probability
        self.clock = clock
        self.cold_starts: Counter[str] = Counter()
        self._idle: dict[str, list[float]] = {}  # function -> when each idle instance was released
        self._lock = threading.Lock()

    def acquire(self, function: str) -> bool:
        """Takes an instance for one invocation; True if it is a cold start."""
        with self._lock:
            idle = self._idle.setdefault(function, [])
            now = self.clock()
            # Released in time order: the reclaimed ones are at the front.
            expired = next((i for i, t in enumerate(idle) if now - t <= self.idle_reclaim_s), len(idle))
            del idle[:expired]
            cold = not idle or self.rng.random() < self.recycle_probability
            if idle:
                idle.pop()  # the most recently used instance
            if cold:
                self.cold_starts[function] += 1
            return cold

    def release(self, function: str) -> None:
        with self._lock:
            self._idle.setdefault(function, []).append(self.clock())
