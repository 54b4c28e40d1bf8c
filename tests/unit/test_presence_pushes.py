"""How presence changes are pushed (logic/presence.py, logic/push.py, logic/deliver.py, the
connect and presence functions): no storm when a user flaps, a failed push retried with the
status version it announces and dropped once the status moved on, and the functions posting to
watchers directly. The scene is presence_world.py's."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from chat_backend.dal import aws
from chat_backend.logic import presence as logic
from chat_backend.logic.deliver import deliver
from chat_backend.logic.push import PushResult
from chat_backend.wiring import PRESENCE_GRACE_S
from tests.unit.helpers import caller
from tests.unit.presence_world import ALICE_PHONE, T0, World

# --- no presence storm ---------------------------------------------------------------------------


@pytest.fixture
def write_counter(aws_env: Any) -> Iterator[Counter[str]]:
    """Counts the functions' AWS calls by operation (the very clients the services use)."""
    counts: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        counts[model.name] += 1

    clients = [aws.client("dynamodb"), aws.client("sqs")]
    for c in clients:
        c.meta.events.register("before-call.*.*", count)
    yield counts
    for c in clients:
        c.meta.events.unregister("before-call.*.*", count)


FLAPS = 20


def test_a_flapping_user_pushes_at_most_two_changes_and_costs_bounded_writes(
    bob_watches_alice: World, write_counter: Counter[str]
) -> None:
    world = bob_watches_alice
    write_counter.clear()
    # When alice's phone flaps FLAPS times (connected 0.2 s, disconnected 0.2 s), new connection each
    # time, the settle jobs running at their due times throughout, then stays away
    for n in range(FLAPS):
        start = T0 + 10 + 0.4 * n
        world.run_settles(until=start)
        phone = caller("u_alice", "d_phone", f"conn-alice-{n}")
        world.connect(phone, start)
        world.disconnect(phone, start + 0.2)
    settles = world.run_settles(until=T0 + 60)
    # Then bob got exactly one ONLINE and one OFFLINE
    statuses = [frame["status"] for _, frame in world.pushes()]
    assert statuses == ["ONLINE", "OFFLINE"]
    # And presence writes are a constant per flap (the lease renewed on connect and shortened on
    # disconnect, as the registry's own two writes) plus the one OFFLINE, whoever watches her
    presence_writes = write_counter["UpdateItem"] - 2 * FLAPS  # minus the registry's two per flap
    assert presence_writes <= 2 * FLAPS + 1
    # And settle jobs coalesce: at most one per half-second slot over the 8 s of flapping and the
    # grace after it, each a few reads (its one write is the OFFLINE)
    flapping_s = 0.4 * FLAPS
    assert settles <= (flapping_s + PRESENCE_GRACE_S) / logic.SETTLE_SLOT_S + 1
    # And SQS sends are settle jobs only (the pushes are posted directly): at most one per
    # disconnect and one per settle that looks again, whoever watches her
    assert write_counter["SendMessageBatch"] <= FLAPS + settles
    assert world.retries() == []
    print(
        f"\n{FLAPS} flaps: pushes={len(statuses)} presence writes={presence_writes} "
        f"settle jobs run={settles} calls={dict(write_counter)}"
    )


# --- failed pushes -------------------------------------------------------------------------------


def test_a_failed_presence_push_is_retried_with_the_status_version_it_announces(
    bob_watches_alice: World,
) -> None:
    world = bob_watches_alice
    # Given bob watching alice on his phone (throttled) and his laptop
    bob_laptop = caller("u_bob", "d_laptop", "conn-bob-laptop")
    world.connect(bob_laptop, T0 + 1)
    world.subscribe(bob_laptop, ["u_alice"], T0 + 1)
    world.push_poster.failing.add("conn-bob-phone")
    # When alice connects
    world.connect(ALICE_PHONE, T0 + 10)
    # Then the laptop got ONLINE at once, and the phone alone waits on the delivery queue with the
    # same frame, guarded by alice's status version
    [(recipients, frame)] = world.pushes()
    assert (recipients, frame["status"]) == ({"conn-bob-laptop"}, "ONLINE")
    [retry] = world.retries()
    state = world.presence.state_of("u_alice")
    assert state is not None
    assert [r.connection_id for r in retry.recipients] == ["conn-bob-phone"]
    assert (json.loads(retry.frame), retry.attempt) == (frame, 1)
    assert (retry.presence.user_id, retry.presence.version) == ("u_alice", state.version)  # type: ignore[union-attr]
    # When the phone is reachable again and the retry is delivered while she is still ONLINE
    world.push_poster.failing.clear()
    result = deliver(retry, world.pusher, world.presence)
    # Then the phone gets that ONLINE
    assert result == PushResult(pushed=1)
    assert world.pushes() == [({"conn-bob-phone"}, frame)]


def test_a_presence_retry_is_dropped_once_the_status_moved_on(bob_watches_alice: World) -> None:
    world = bob_watches_alice
    # Given alice's ONLINE failed to reach bob's phone and waits on the delivery queue
    world.push_poster.failing.add("conn-bob-phone")
    world.connect(ALICE_PHONE, T0 + 10)
    [retry] = world.retries()
    world.push_poster.failing.clear()
    # And alice then left, and went OFFLINE after the grace (bob was told)
    world.disconnect(ALICE_PHONE, T0 + 20)
    world.run_settles(until=T0 + 60)
    [(_, offline)] = world.pushes()
    assert offline["status"] == "OFFLINE"
    # When the stale ONLINE retry is delivered
    result = deliver(retry, world.pusher, world.presence)
    # Then it is dropped unposted: bob's last word on alice stays OFFLINE
    assert result == PushResult(dropped=1)
    assert world.pushes() == []
    assert world.retries() == []


def test_the_connect_function_posts_online_to_the_watchers_directly(
    bob_watches_alice: World,
    management_api: Any,
    handler_of: Callable[[str], Any],
    make_connect_event: Callable[..., dict[str, Any]],
    lambda_context: Any,
) -> None:
    # Given bob watching alice, and a management API that accepts every post
    posted: list[tuple[str, dict[str, Any]]] = []
    management_api.meta.events.register(
        "before-parameter-build.apigatewaymanagementapi.PostToConnection",
        lambda params, **_: posted.append((params["ConnectionId"], json.loads(params["Data"]))),
    )
    management_api.meta.events.register(
        "before-call.apigatewaymanagementapi.PostToConnection",
        lambda **_: (AWSResponse(None, 200, {}, None), {}),  # type: ignore[arg-type]
    )
    # When alice's phone connects through the connect function
    answer = handler_of("connect")(make_connect_event("u_alice", "d_phone", "conn-a1"), lambda_context)
    # Then the connection is accepted, and bob's phone was posted ONLINE for alice by the function
    # itself, nothing going through the delivery queue
    assert answer == {"statusCode": 200}
    assert [(c, f["userId"], f["status"]) for c, f in posted] == [("conn-bob-phone", "u_alice", "ONLINE")]
    assert bob_watches_alice.retries() == []


def test_the_presence_route_answers_forbidden_for_a_stranger(
    aws_env: Any,
    handler_of: Callable[[str], Any],
    make_message_event: Callable[..., dict[str, Any]],
    lambda_context: Any,
) -> None:
    # Given mallory, who shares no chat with anyone
    # When she sends a presence frame subscribing to alice through the presence function
    event = make_message_event({"action": "presence", "subscribe": ["u_alice"]}, user_id="u_mallory")
    answer = handler_of("presence")(event, lambda_context)
    # Then the frame is answered with ERROR FORBIDDEN and nothing is stored
    assert json.loads(answer["body"]) == {
        "type": "ERROR",
        "code": "FORBIDDEN",
        "message": "presence of a user who has not opened it to you",
        "requestId": None,
        "clientMsgId": None,
    }
    assert aws_env.scan("presence") == []
