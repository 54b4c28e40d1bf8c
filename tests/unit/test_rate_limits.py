"""Rate limits (logic/rate_limits.py, dal/limit_store.py, wiring.RATE_LIMITS): token buckets per
user and per connection, kept in DynamoDB (moto here) so that they hold across Lambda instances."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from chat_backend import wiring
from chat_backend.dal.limit_store import LimitStore
from chat_backend.errors import RateLimited
from chat_backend.logic.rate_limits import LIMIT_ITEM_TTL_S, Party, RateLimiter, RouteGuard
from chat_backend.services import services, services_of
from chat_backend.wiring import Rate, RouteLimit
from tests.unit.conftest import AwsEnv
from tests.unit.helpers import CountingDdb, FakeClock, Route

T0 = 1_800_000_000.0


def limiter_on(aws_env: AwsEnv, clock: FakeClock, ddb: Any = None) -> RateLimiter:
    """One Lambda instance's limiter (its own memory of the buckets it saw)."""
    return RateLimiter(LimitStore(aws_env.tables["limits"], ddb or aws_env.ddb), clock=clock)


def takes(limiter: RateLimiter, parties: list[Party], times: int, key: str = "u#alice") -> int:
    """How many of `times` calls were admitted."""
    admitted = 0
    for _ in range(times):
        try:
            limiter.take(key, "send", parties)
            admitted += 1
        except RateLimited:
            pass
    return admitted


def test_a_burst_is_admitted_then_refused_with_the_wait_and_refilled_at_the_rate(aws_env: AwsEnv) -> None:
    # Given a bucket of 5 at once and 10 a second
    clock = FakeClock(T0)
    limiter = limiter_on(aws_env, clock)
    user = [Party("u", Rate(5, 10))]
    # When 5 calls come at once, then a sixth
    assert takes(limiter, user, 5) == 5
    with pytest.raises(RateLimited) as refused:
        limiter.take("u#alice", "send", user)
    # Then the sixth waits one interval (100 ms); after it, one more call fits, not two
    assert refused.value.retry_after_ms == 100
    clock.now += 0.1
    assert takes(limiter, user, 2) == 1
    # And after a full refill (0.5 s) the whole burst is back
    clock.now += 0.5
    assert takes(limiter, user, 6) == 5


def test_the_limit_holds_across_instances(aws_env: AwsEnv) -> None:
    # Given two Lambda instances of one function (each with its own memory), one bucket of 10
    clock = FakeClock(T0)
    first, second = limiter_on(aws_env, clock), limiter_on(aws_env, clock)
    user = [Party("u", Rate(10, 1))]
    # When the user's calls alternate between them, 20 in all, at one instant
    admitted = sum(takes(first if i % 2 else second, user, 1) for i in range(20))
    # Then 10 are admitted in all, not 10 per instance
    assert admitted == 10


def test_one_connection_over_its_limit_leaves_the_users_other_devices_their_share(aws_env: AwsEnv) -> None:
    # Given a user limit of 8 and a per-connection limit of 5
    clock = FakeClock(T0)
    limiter = limiter_on(aws_env, clock)

    def parties(connection: str) -> list[Party]:
        return [Party("u", Rate(8, 1)), Party(f"c:{connection}", Rate(5, 1))]

    # When the phone sends 7 and the laptop 7 at once
    phone = takes(limiter, parties("phone"), 7)
    laptop = takes(limiter, parties("laptop"), 7)
    # Then the phone gets its 5, the laptop the 3 left in the user's bucket
    assert (phone, laptop) == (5, 3)


def test_a_call_known_to_be_over_costs_no_aws_call(aws_env: AwsEnv) -> None:
    # Given an instance that has used up a bucket of 3
    clock = FakeClock(T0)
    counting = CountingDdb(aws_env.ddb)
    limiter = limiter_on(aws_env, clock, counting)
    user = [Party("u", Rate(3, 1))]
    assert takes(limiter, user, 3) == 3
    writes_before = len(counting.calls)
    # When a script keeps calling 100 times within the same second
    assert takes(limiter, user, 100) == 0
    # Then the instance refuses all of them without a single DynamoDB call
    assert len(counting.calls) == writes_before == 3


def test_parties_whose_bucket_is_full_again_are_removed_so_an_item_never_grows(aws_env: AwsEnv) -> None:
    # Given 50 connections of one user, each calling once, a second apart
    clock = FakeClock(T0)
    limiter = limiter_on(aws_env, clock)
    for i in range(50):
        limiter.take("u#alice", "send", [Party("u", Rate(100, 20)), Party(f"c:conn{i}", Rate(10, 5))])
        clock.now += 1.0
    # When the item is read
    [item] = [i for i in aws_env.scan("limits") if i["key"] == "u#alice"]
    # Then it holds the user's bucket and the newest connection's, not 50, and expires after the TTL
    assert sorted(k for k in item if k not in ("key", "bucket", "expiresAt")) == ["c:conn49", "u"]
    assert int(item["expiresAt"]) == int(clock.now - 1.0) + LIMIT_ITEM_TTL_S


def test_a_wrong_guess_about_the_bucket_is_corrected_from_the_item_the_write_returns(aws_env: AwsEnv) -> None:
    # Given an instance that saw the bucket full, and another that then drained it to 1 token left
    clock = FakeClock(T0)
    stale, busy = limiter_on(aws_env, clock), limiter_on(aws_env, clock)
    user = [Party("u", Rate(4, 1))]
    assert takes(stale, user, 1) == 1
    clock.now += 10  # stale's memory says "full" from now on
    assert takes(busy, user, 3) == 3
    # When the stale instance is called twice
    # Then the first fits (its failed guess returns the real bucket, the retry fits) and the
    # second is refused: the real state wins over the stale memory
    assert takes(stale, user, 2) == 1


# --- routes --------------------------------------------------------------------------------------


def send_body(chat_id: str, n: int) -> dict[str, Any]:
    return {
        "action": "send",
        "clientMsgId": f"cm-{n}",
        "chatId": chat_id,
        "ciphertext": base64.b64encode(b"x").decode(),
    }


def test_a_send_over_the_limit_is_rate_limited_with_its_wait_and_stores_nothing(
    route: Route, chat_id: str, aws_env: AwsEnv
) -> None:
    # Given alice's connection has sent its burst of 100, all at one instant
    services_of("send").limiter.clock = FakeClock(T0)
    burst = wiring.RATE_LIMITS["send"].connection
    assert burst is not None
    for n in range(burst.burst):
        assert json.loads(route("send", send_body(chat_id, n))["body"])["type"] == "ACK"
    # When she sends once more at once
    frame = json.loads(route("send", send_body(chat_id, 999))["body"])
    # Then RATE_LIMITED tells her when to retry and echoes the clientMsgId, and nothing is stored
    assert (frame["code"], frame["clientMsgId"]) == ("RATE_LIMITED", "cm-999")
    assert 0 < frame["retryAfterMs"] <= 1000
    assert len(aws_env.messages(chat_id)) == burst.burst


def test_a_fire_and_forget_frame_over_the_limit_is_dropped_without_an_answer(
    route: Route, chat_id: str
) -> None:
    # Given alice typing in her chat
    typing = {"action": "typing", "chatId": chat_id}
    first = route("presence", typing)
    # When she types again at once (one TYPING per user and chat every 3 s)
    second = route("presence", typing)
    # Then neither answers anything: the second is coalesced away, silently
    assert first == second == {"statusCode": 200}


def test_typing_is_coalesced_per_chat_not_per_user(route: Route, make_chat: Any) -> None:
    # Given alice in two chats, having just typed in the first
    first, other = make_chat("u_alice", "u_bob"), make_chat("u_alice", "u_carol")
    guard = services().guard
    guard.admit("typing", "u_alice", "conn-1", first)
    # When she types in the other chat, then in the first again
    guard.admit("typing", "u_alice", "conn-1", other)
    # Then the other chat's notice is admitted and the first's repeat is not
    with pytest.raises(RateLimited):
        guard.admit("typing", "u_alice", "conn-1", first)


# --- the table of limits -------------------------------------------------------------------------


def test_every_route_is_limited_and_every_function_serving_one_can_reach_its_buckets() -> None:
    # Given the wiring table
    # Then every route key has limits, and every function with a route uses the limits table
    assert set(wiring.routes()) - {"$disconnect"} == set(wiring.RATE_LIMITS)
    for function in wiring.FUNCTIONS:
        if function.routes:
            assert function.uses.get("limits") == "read_write", function.name


def test_the_limits_meet_the_floors_a_person_needs() -> None:
    # Given the limits as configured
    send = wiring.RATE_LIMITS["send"]
    # Then a device may send a burst of 100 and 20/s; a user's many devices 200
    assert send.connection is not None and send.connection.burst >= 100 and send.connection.per_s >= 20
    assert send.user.burst >= 200 and send.user.per_s >= 20
    # And a first key exchange with a whole 10,000-member group fits the key fetch burst
    assert wiring.RATE_LIMITS["fetchKeys"].user.burst >= 10_000
    # And no bucket takes longer to refill than its item lives (an expired item is a full bucket)
    for limit in wiring.RATE_LIMITS.values():
        for rate in (limit.user, limit.connection, limit.per_chat):
            if rate is not None:
                assert Party("x", rate).capacity_ms / 1000 < LIMIT_ITEM_TTL_S


def test_a_route_without_limits_is_never_refused(aws_env: AwsEnv) -> None:
    # Given a guard whose table has no entry for a route
    guard = RouteGuard(limiter_on(aws_env, FakeClock(T0)), {"send": RouteLimit("send", Rate(1, 1), None)})
    # When that other route is called many times
    for _ in range(10):
        guard.admit("sync", "u_alice", "c1")
    # Then it is never refused, and nothing is written
    assert aws_env.scan("limits") == []


def test_frequent_frames_are_written_down_every_few_calls_and_the_limit_still_holds(aws_env: AwsEnv) -> None:
    # Given an instance settling every 4th call, on a bucket of 10 at once
    clock = FakeClock(T0)
    counting = CountingDdb(aws_env.ddb)
    limiter = limiter_on(aws_env, clock, counting)
    user = [Party("u", Rate(10, 1))]
    # When 3 calls come, then a fourth
    for _ in range(3):
        limiter.take("u#alice", "send", user, settle_every=4)
    writes_after_three = len(counting.calls)
    limiter.take("u#alice", "send", user, settle_every=4)
    # Then the first three cost nothing, the fourth writes all four down at once
    assert writes_after_three == 0 and len(counting.calls) == 1
    [item] = aws_env.scan("limits")
    assert int(item["u"]) == int(T0 * 1000) + 4 * 1000
    # And the bucket still holds 10 in all: 6 more fit, the 11th does not
    more = 0
    for _ in range(7):
        try:
            limiter.take("u#alice", "send", user, settle_every=4)
            more += 1
        except RateLimited:
            pass
    assert more == 6


def test_instances_settling_late_overshoot_by_at_most_what_each_holds_back(aws_env: AwsEnv) -> None:
    # Given three instances settling every 4th call, on one bucket of 20
    clock = FakeClock(T0)
    instances = [limiter_on(aws_env, clock) for _ in range(3)]
    user = [Party("u", Rate(20, 1))]
    # When a script spreads 90 calls over them at one instant
    admitted = 0
    for i in range(90):
        try:
            instances[i % 3].take("u#alice", "send", user, settle_every=4)
            admitted += 1
        except RateLimited:
            pass
    # Then at least the bucket is admitted, and at most 3 more per instance
    assert 20 <= admitted <= 20 + 3 * 3
