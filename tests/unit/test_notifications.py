"""Mobile push (logic/notifications.py, dal/push_registry.py, dal/push_sender.py) over moto's SNS and
DynamoDB: registration, who is notified, coalescing per device and per large group, stale tokens."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from chat_backend import wiring
from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.dal.delivery_queue import DeliveryQueue
from chat_backend.dal.push_registry import PushRegistry
from chat_backend.dal.push_sender import PushSender
from chat_backend.errors import BadRequest, ConnectionGone
from chat_backend.logic.direct import push_sent
from chat_backend.logic.notifications import notify, offline_jobs, register_push, unregister_push
from chat_backend.logic.push import Pusher
from chat_backend.logic.send import Ledger, send_message
from chat_backend.models.client_frames import RegisterPushFrame, UnregisterPushFrame
from chat_backend.models.events import Caller
from chat_backend.models.queue_payloads import NotifyJob
from tests.unit.conftest import AwsEnv
from tests.unit.helpers import POLICY, caller, online, send_frame

WINDOW = wiring.NOTIFY_DEVICE_WINDOW_S


class Phones:
    """What moto's SNS endpoints received, by token."""

    def __init__(self, sns: Any) -> None:
        self.sns = sns

    def received(self, token: str) -> list[dict[str, Any]]:
        from moto.sns.models import sns_backends

        backend = sns_backends["123456789012"]["us-east-1"]
        return [
            json.loads(message)
            for endpoint in backend.platform_endpoints.values()
            if endpoint.token == token
            for message in endpoint.messages.values()
        ]


@pytest.fixture
def push(aws_env: AwsEnv) -> tuple[PushRegistry, PushSender, Phones]:
    sns = boto3.client("sns", region_name="us-east-1")
    platforms = {
        p: sns.create_platform_application(
            Name=f"chat-{p.replace('_', '-')}", Platform={"fcm": "GCM"}.get(p, p.upper()), Attributes={}
        )["PlatformApplicationArn"]
        for p in ("apns", "fcm")
    }
    return PushRegistry(aws_env.tables["push"], aws_env.ddb), PushSender(platforms, sns), Phones(sns)


def register(
    push: tuple[PushRegistry, PushSender, Phones], user: str, token: str, device: str = "d1"
) -> None:
    frame = RegisterPushFrame.model_validate(
        {"action": "registerPush", "requestId": "r", "platform": "fcm", "token": token}
    )
    register_push(push[0], push[1], Caller(user_id=user, device_id=device, connection_id="c"), frame)


def run(push: tuple[PushRegistry, PushSender, Phones], jobs: list[NotifyJob], now: int) -> Any:
    with ThreadPoolExecutor(4) as pool:
        return notify(push[0], push[1], pool, jobs, now)


def test_offline_members_but_the_sender_make_jobs_of_at_most_2000_users() -> None:
    # Given a group of 4,500 members of whom u_1 and u_2 are connected, and u_0 sent
    members = [f"u_{i}" for i in range(4500)]
    # When the jobs are made
    jobs = offline_jobs("g_1", 7, members, {"u_1", "u_2"}, "u_0", large=True)
    # Then the 4,497 others are in jobs of 2,000, each naming the message
    assert [len(j.users) for j in jobs] == [2000, 2000, 497]
    assert {u for j in jobs for u in j.users} == set(members) - {"u_0", "u_1", "u_2"}
    assert all((j.chat_id, j.seq, j.large) == ("g_1", 7, True) for j in jobs)


def test_a_device_is_notified_once_per_window_and_then_told_the_count(push: Any) -> None:
    # Given bob's phone registered for push
    register(push, "bob", "tok-bob")
    # When three messages come within his window, and a fourth after it
    first = run(push, [NotifyJob(chatId="c_1", seq=1, users=["bob"])], now=1000)
    later = [run(push, [NotifyJob(chatId="c_1", seq=s, users=["bob"])], now=1000 + s) for s in (2, 3)]
    fourth = run(push, [NotifyJob(chatId="c_1", seq=4, users=["bob"])], now=1000 + WINDOW + 1)
    # Then he got two notifications: the first (count 1) and, after the window, count 3 (the two
    # held back and the fourth); each carries only the chat id and the count
    assert (first.notified, [r.coalesced for r in later], fourth.notified) == (1, [1, 1], 1)
    received = push[2].received("tok-bob")
    assert [json.loads(m["GCM"])["data"] for m in received] == [
        {"chatId": "c_1", "count": "1"},
        {"chatId": "c_1", "count": "3"},
    ]


def test_a_large_groups_members_are_notified_once_per_chat_window(push: Any) -> None:
    # Given carol registered, in a large group
    register(push, "carol", "tok-carol")
    # When two messages of the group come seconds apart, each with its jobs (two parts for seq 5)
    first = run(push, [NotifyJob(chatId="g_1", seq=5, users=["carol"], large=True)] * 2, now=2000)
    second = run(push, [NotifyJob(chatId="g_1", seq=6, users=["carol"], large=True)], now=2010)
    # Then seq 5's parts both went through the gate, seq 6 was skipped (one round a window)
    assert (first.notified + first.coalesced, first.skipped) == (2, 0)
    assert (second.skipped, second.notified) == (1, 0)
    assert len(push[2].received("tok-carol")) == 1


def test_a_token_the_platform_refuses_is_forgotten_with_its_endpoint(push: Any, aws_env: AwsEnv) -> None:
    # Given dave registered, and his endpoint disabled by the platform (app uninstalled)
    register(push, "dave", "tok-dave")
    [registration] = push[0].registrations_of(["dave"])
    push[1].sns.set_endpoint_attributes(
        EndpointArn=registration.endpoint_arn, Attributes={"Enabled": "false"}
    )
    # When he is to be notified
    result = run(push, [NotifyJob(chatId="c_1", seq=1, users=["dave"])], now=3000)
    # Then nothing was delivered, his registration is gone, and so is the endpoint
    assert (result.gone, result.notified) == (1, 0)
    assert push[0].registrations_of(["dave"]) == []
    with pytest.raises(push[1].sns.exceptions.NotFoundException):
        push[1].sns.get_endpoint_attributes(EndpointArn=registration.endpoint_arn)


def test_registering_again_replaces_the_token_and_unregistering_stops_notifications(push: Any) -> None:
    # Given erin registered one token, then another (the OS rotated it)
    register(push, "erin", "tok-old")
    [old] = push[0].registrations_of(["erin"])
    register(push, "erin", "tok-new")
    # Then only the new one is kept, and the old endpoint is deleted
    assert [r.token for r in push[0].registrations_of(["erin"])] == ["tok-new"]
    with pytest.raises(push[1].sns.exceptions.NotFoundException):
        push[1].sns.get_endpoint_attributes(EndpointArn=old.endpoint_arn)
    # When she unregisters, Then she is no longer notified
    unregister_push(
        push[0],
        push[1],
        Caller(user_id="erin", device_id="d1", connection_id="c"),
        UnregisterPushFrame.model_validate({"action": "unregisterPush", "requestId": "r"}),
    )
    assert run(push, [NotifyJob(chatId="c_1", seq=1, users=["erin"])], now=4000).notified == 0
    assert push[2].received("tok-new") == []


def test_a_platform_this_deployment_has_no_application_for_is_a_bad_request(push: Any) -> None:
    # Given a deployment with APNs and FCM only
    frame = RegisterPushFrame.model_validate(
        {"action": "registerPush", "requestId": "r", "platform": "apns_sandbox", "token": "t"}
    )
    # When a device registers for the APNs sandbox, Then BAD_REQUEST, and nothing is kept
    with pytest.raises(BadRequest, match="not configured"):
        register_push(push[0], push[1], Caller(user_id="fay", device_id="d1", connection_id="c"), frame)
    assert push[0].registrations_of(["fay"]) == []


def test_a_token_registered_again_after_its_endpoint_was_disabled_is_enabled_again(push: Any) -> None:
    # Given gus's endpoint, disabled once when the platform refused his token
    register(push, "gus", "tok-gus")
    [before] = push[0].registrations_of(["gus"])
    push[1].sns.set_endpoint_attributes(EndpointArn=before.endpoint_arn, Attributes={"Enabled": "false"})
    # When his app registers the same token again (SNS refuses to make a second endpoint for it)
    register(push, "gus", "tok-gus")
    # Then the same endpoint is kept, enabled, and he is notified
    [after] = push[0].registrations_of(["gus"])
    assert after.endpoint_arn == before.endpoint_arn
    attributes = push[1].sns.get_endpoint_attributes(EndpointArn=after.endpoint_arn)["Attributes"]
    assert attributes["Enabled"] == "true"
    assert run(push, [NotifyJob(chatId="c_1", seq=1, users=["gus"])], now=5000).notified == 1


@dataclass
class GonePoster:
    """A ConnectionPoster whose `gone` connections answer 410, as API Gateway does for a dead one."""

    gone: set[str]

    def post(self, connection_id: str, data: str) -> None:
        if connection_id in self.gone:
            raise ConnectionGone(connection_id)


@dataclass
class RecordingNotifyQueue:
    jobs: list[NotifyJob] = field(default_factory=list)

    def enqueue(self, jobs: list[NotifyJob]) -> None:
        self.jobs.extend(jobs)


@pytest.mark.parametrize(
    ("gone", "notified"),
    [
        ({"conn-u_bob-d_phone", "conn-u_bob-d_tablet"}, ["u_bob"]),
        ({"conn-u_bob-d_phone"}, []),
        (set(), []),
    ],
    ids=["every-device-gone", "one-device-live", "both-live"],
)
def test_a_member_whose_every_connection_is_gone_is_notified_one_with_a_live_device_is_not(
    ledger: Ledger,
    registry: ConnectionRegistry,
    queue: DeliveryQueue,
    io_pool: ThreadPoolExecutor,
    make_chat: Callable[..., str],
    gone: set[str],
    notified: list[str],
) -> None:
    # Given bob registered on his phone and tablet, with the `gone` connections dead (410)
    chat_id = make_chat("u_alice", "u_bob", kind="direct")
    for device in ("d_phone", "d_tablet"):
        online(registry, "u_bob", device)
    pusher = Pusher(GonePoster(gone), registry, queue, io_pool)  # type: ignore[arg-type]
    notify_queue = RecordingNotifyQueue()
    # When alice sends him a message and it is pushed
    sent = send_message(ledger, caller("u_alice"), send_frame(chat_id), POLICY)
    push_sent(ledger, pusher, sent, notify_queue)  # type: ignore[arg-type]
    # Then bob is queued for a notification exactly when none of his devices took the push
    assert [user for job in notify_queue.jobs for user in job.users] == notified
