"""Pushing (logic/push.py + dal/connection_poster.py), with a botocore Stubber on the management
API: every recipient is posted on its own; a 410 drops that recipient's stale connection only; any
other failure sends that recipient alone back to the (standard) delivery queue with a growing
delay, and nobody else waits for it. The deliver function, which runs the retries, is in
test_deliver.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from chat_backend.dal.connection_poster import ConnectionPoster
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue
from chat_backend.errors import ConnectionGone
from chat_backend.logic.push import RECIPIENTS_PER_ENVELOPE, Pusher, PushResult, RetryPolicy
from chat_backend.models.common import now_iso
from chat_backend.models.queue_payloads import Recipient
from tests.unit.conftest import Enqueued, RecordingPoster
from tests.unit.helpers import online
from tests.unit.lambda_events import CALLBACK_URL
from tests.unit.posting import (
    BOB,
    CAROL,
    DAVE,
    FRAME,
    SERVER_ERROR,
    THROTTLED,
    connect,
    expect_error,
    expect_gone,
    expect_post,
)


@pytest.fixture
def one_worker() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


@pytest.fixture
def api_poster(management_api: Any) -> ConnectionPoster:
    return ConnectionPoster("unused", api=management_api)


def pusher_of(
    poster: Any, registry: ConnectionRegistry, queue: DeliveryQueue, pool: Any, **retry: int
) -> Pusher:
    return Pusher(poster=poster, registry=registry, queue=queue, pool=pool, retry=RetryPolicy(**retry))


@pytest.fixture
def in_order(
    api_poster: ConnectionPoster,
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    one_worker: ThreadPoolExecutor,
) -> Pusher:
    """A Pusher posting through the Stubber with one worker, so posts happen in recipient order,
    which the Stubber's queue expects."""
    return pusher_of(api_poster, registry, queue, one_worker)


Retrying = Callable[..., Pusher]


@pytest.fixture
def retrying(api_poster: ConnectionPoster, registry: ConnectionRegistry, queue: DeliveryQueue) -> Retrying:
    """retrying(**RetryPolicy fields): a Pusher posting through the Stubber, for one recipient at a
    time (no pool)."""
    return lambda **retry: pusher_of(api_poster, registry, queue, None, **retry)


# --- the poster ----------------------------------------------------------------------------------


def test_poster_posts_the_frame_bytes_to_the_connection(api_poster: ConnectionPoster, stub: Stubber) -> None:
    # Given a live connection
    expect_post(stub, "conn-1")
    # When a frame is posted to it
    api_poster.post("conn-1", FRAME)
    # Then the management API got exactly that connection and those bytes
    stub.assert_no_pending_responses()


def test_poster_turns_410_into_connection_gone(api_poster: ConnectionPoster, stub: Stubber) -> None:
    # Given a connection API Gateway no longer knows
    expect_gone(stub, "conn-old")
    # When a frame is posted to it, Then the poster says which connection is gone
    with pytest.raises(ConnectionGone) as err:
        api_poster.post("conn-old", FRAME)
    assert err.value.connection_id == "conn-old"


# --- Pusher.push ---------------------------------------------------------------------------------


def test_every_recipient_is_posted_in_parallel(
    registry: ConnectionRegistry, queue: DeliveryQueue, io_pool: ThreadPoolExecutor, enqueued: Enqueued
) -> None:
    # Given a poster whose posts each wait until all three are under way at once (one at a time,
    # the first would wait in vain and fail)
    barrier = threading.Barrier(3, timeout=5)
    posted: list[str] = []

    class Rendezvous:
        def post(self, connection_id: str, data: str) -> None:
            barrier.wait()
            posted.append(connection_id)

    # When a frame is pushed to bob, carol and dave
    result = pusher_of(Rendezvous(), registry, queue, io_pool).push(FRAME, [BOB, CAROL, DAVE])
    # Then all three were posted, and nothing was left for a retry
    assert sorted(posted) == ["conn-bob", "conn-carol", "conn-dave"]
    assert result == PushResult(pushed=3)
    assert enqueued.entries == []


def test_a_gone_recipient_loses_only_its_own_connection_record(
    registry: ConnectionRegistry, stub: Stubber, enqueued: Enqueued, in_order: Pusher
) -> None:
    # Given bob's phone (gone) and tablet, carol's phone (live), and dave's phone, whose recipient
    # names an old connection that a reconnect has already replaced with conn-dave-new
    connect(registry, BOB, CAROL)
    online(registry, "u_bob", "d_tablet", "conn-bob-tablet")
    online(registry, "u_dave", "d_phone", "conn-dave-new")
    old_dave = Recipient(user_id="u_dave", device_id="d_phone", connection_id="conn-dave-old")
    expect_gone(stub, "conn-bob")
    expect_post(stub, "conn-carol")
    expect_gone(stub, "conn-dave-old")
    # When the frame is pushed to the three
    result = in_order.push(FRAME, [BOB, CAROL, old_dave])
    # Then carol got it, two connections were gone and nothing is retried
    stub.assert_no_pending_responses()
    assert result == PushResult(pushed=1, gone=2, gone_connections=frozenset({"conn-bob", "conn-dave-old"}))
    assert enqueued.entries == []
    # And bob's phone record is removed (his tablet stays), and dave's newer connection stays
    assert registry.devices_of(["u_bob", "u_carol", "u_dave"]) == {
        "u_bob": {"d_tablet": "conn-bob-tablet"},
        "u_carol": {"d_phone": "conn-carol"},
        "u_dave": {"d_phone": "conn-dave-new"},
    }


def test_a_410_from_a_connection_still_in_its_connect_is_retried_not_forgotten(
    registry: ConnectionRegistry, stub: Stubber, enqueued: Enqueued, in_order: Pusher
) -> None:
    # Given bob's phone registered just now (its $connect may not have returned: API Gateway
    # answers 410 to posts until it does)
    registry.register("u_bob", "d_phone", "conn-bob", now_iso(), 2_000_000_000)
    expect_gone(stub, "conn-bob")
    # When a frame is pushed to it and refused with 410
    result = in_order.push(FRAME, [BOB])
    # Then it is retried through the delivery queue, and bob's phone stays registered
    stub.assert_no_pending_responses()
    assert result == PushResult(retried=1)
    assert len(enqueued.entries) == 1
    assert registry.devices_of(["u_bob"]) == {"u_bob": {"d_phone": "conn-bob"}}


def test_a_single_recipient_is_posted_without_the_pool(
    registry: ConnectionRegistry, queue: DeliveryQueue, api_poster: ConnectionPoster, stub: Stubber
) -> None:
    # Given a 1:1 push to bob's gone phone, and a pool that must not be used
    connect(registry, BOB)
    expect_gone(stub, "conn-bob")

    class NoPool:
        def map(self, *_: Any) -> Any:
            raise AssertionError("a single recipient needs no thread hop")

    # When it is pushed
    result = pusher_of(api_poster, registry, queue, NoPool()).push(FRAME, [BOB])
    # Then bob's record is gone
    assert result == PushResult(gone=1, gone_connections=frozenset({"conn-bob"}))
    assert registry.devices_of(["u_bob"]) == {}


@pytest.mark.parametrize(("code", "status"), [THROTTLED, SERVER_ERROR], ids=["429", "500"])
def test_a_failing_recipient_is_retried_alone_and_does_not_hold_up_the_others(
    code: str, status: int, registry: ConnectionRegistry, stub: Stubber, enqueued: Enqueued, in_order: Pusher
) -> None:
    # Given bob first in line, whose post fails, then carol and dave, posted one after the other
    connect(registry, BOB, CAROL, DAVE)
    expect_error(stub, "conn-bob", code, status)
    expect_post(stub, "conn-carol")
    expect_post(stub, "conn-dave")
    # When the frame is pushed to the three (no push of it made before)
    result = in_order.push(FRAME, [BOB, CAROL, DAVE])
    # Then carol and dave were posted at once all the same
    stub.assert_no_pending_responses()
    assert result == PushResult(pushed=2, retried=1)
    # And bob alone went back on the delivery queue: same frame, second attempt, after 1 s
    [(envelope, delay)] = enqueued.envelopes()
    assert (envelope.recipients, envelope.frame, envelope.attempt, envelope.presence) == (
        [BOB],
        FRAME,
        1,
        None,
    )
    assert delay == 1
    # And no connection record was touched
    assert set(registry.devices_of(["u_bob", "u_carol", "u_dave"])) == {"u_bob", "u_carol", "u_dave"}


def test_a_timed_out_recipient_is_retried_while_the_others_are_posted_meanwhile(
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    io_pool: ThreadPoolExecutor,
    poster: RecordingPoster,
    enqueued: Enqueued,
) -> None:
    # Given a post to bob that hangs until carol and dave have been posted, then times out
    others_posted = threading.Event()

    class SlowBob:
        saw_others = False

        def post(self, connection_id: str, data: str) -> None:
            if connection_id == "conn-bob":
                SlowBob.saw_others = others_posted.wait(timeout=5)
                raise ReadTimeoutError(endpoint_url=CALLBACK_URL)
            poster.post(connection_id, data)
            if len(poster.posts) == 2:
                others_posted.set()

    # When the frame is pushed to bob, carol and dave
    result = pusher_of(SlowBob(), registry, queue, io_pool).push(FRAME, [BOB, CAROL, DAVE])
    # Then carol and dave were posted while bob's post still hung
    assert SlowBob.saw_others
    assert sorted(c for c, _ in poster.posts) == ["conn-carol", "conn-dave"]
    # And bob alone is retried
    assert result == PushResult(pushed=2, retried=1)
    assert [e.recipients for e, _ in enqueued.envelopes()] == [[BOB]]


@pytest.mark.parametrize(
    ("base", "attempt", "delay"),
    [(1, 0, 1), (1, 1, 2), (2, 3, 16), (100, 4, 900)],
    ids=["first-retry", "second-retry", "base-2-fourth-retry", "capped-at-15-minutes"],
)
def test_the_retry_delay_doubles_with_each_attempt(
    base: int, attempt: int, delay: int, stub: Stubber, enqueued: Enqueued, retrying: Retrying
) -> None:
    # Given `attempt` pushes of the frame to bob already failed, and bob is throttled again
    expect_error(stub, "conn-bob", *THROTTLED)
    pusher = retrying(max_attempts=10, base_delay_s=base)
    # When it is pushed once more
    result = pusher.push(FRAME, [BOB], attempt=attempt)
    # Then it is queued for attempt + 1, delayed base * 2**attempt (at most SQS's 900 s)
    [(envelope, delay_s)] = enqueued.envelopes()
    assert (envelope.attempt, delay_s) == (attempt + 1, delay)
    assert result == PushResult(retried=1)


def test_after_the_last_attempt_a_recipient_is_dropped(
    stub: Stubber, enqueued: Enqueued, retrying: Retrying
) -> None:
    # Given at most 3 pushes per recipient, and bob throttled on every one
    pusher = retrying(max_attempts=3, base_delay_s=1)
    for _ in range(2):
        expect_error(stub, "conn-bob", *THROTTLED)
    # When the second push fails, Then a third is queued
    assert pusher.push(FRAME, [BOB], attempt=1) == PushResult(retried=1)
    assert [e.attempt for e, _ in enqueued.envelopes()] == [2]
    # When the third fails, Then bob is dropped (his device finds the frame by sync): nothing queued
    assert pusher.push(FRAME, [BOB], attempt=2) == PushResult(dropped=1)
    assert len(enqueued.entries) == 1
    stub.assert_no_pending_responses()


def test_many_failing_recipients_are_retried_in_envelopes_of_100(
    registry: ConnectionRegistry, queue: DeliveryQueue, io_pool: ThreadPoolExecutor, enqueued: Enqueued
) -> None:
    # Given 150 recipients whose posts all fail
    class Down:
        def post(self, connection_id: str, data: str) -> None:
            raise ReadTimeoutError(endpoint_url=CALLBACK_URL)

    recipients = [Recipient(user_id=f"u_{n:03}", device_id="d", connection_id=f"c-{n}") for n in range(150)]
    # When the frame is pushed to them
    result = pusher_of(Down(), registry, queue, io_pool).push(FRAME, recipients)
    # Then they are queued in envelopes of at most 100, each recipient once, each with the frame
    sizes = [len(e.recipients) for e, _ in enqueued.envelopes()]
    assert sizes == [RECIPIENTS_PER_ENVELOPE, 150 - RECIPIENTS_PER_ENVELOPE]
    assert {r for e, _ in enqueued.envelopes() for r in e.recipients} == set(recipients)
    assert {e.frame for e, _ in enqueued.envelopes()} == {FRAME}
    assert result == PushResult(retried=150)
