"""getChatDevices and DEVICES_CHANGED (logic/device_lists.py, the keys function): every device of a
chat's current members, paged within a frame's budget; a publish that adds a device or changes its
identity key is pushed to the user's other devices and to those it shares a chat with, within the
bounds (small groups, direct chats first, blocks, a per-user budget); a top-up pushes nothing."""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from chat_backend.dal.key_store import DeviceRecord, SignedPreKeyRecord
from chat_backend.dal.member_store import MembershipContext
from chat_backend.logic import device_lists
from chat_backend.logic.device_lists import DeviceNews, get_chat_devices
from chat_backend.logic.keys import publish_keys
from chat_backend.logic.push import Pusher
from chat_backend.logic.send import Ledger
from chat_backend.models.client_frames import GetChatDevicesFrame, PublishKeysFrame
from chat_backend.models.common import ANSWER_BUDGET_BYTES, MAX_FRAME_BYTES
from chat_backend.models.events import Caller
from chat_backend.models.records import ChatMeta
from chat_backend.services import services
from chat_backend.wiring import Rate
from tests.unit.conftest import AwsEnv, RecordingPoster
from tests.unit.helpers import MakeChat, caller, online, remove
from tests.unit.test_keys import Handler, b64, call, publish_frame

Publish = Callable[..., None]


def publish_as(user: str, device: str, identity: str | None = None, signing: str | None = None) -> None:
    """Publish a device's keys as the keys function does (announcing nothing)."""
    frame = publish_frame(device, [1]) | {"identityKey": b64(identity or f"ik-{user}-{device}")}
    if signing is not None:
        frame["signingKey"] = b64(signing)
    publish_keys(services().keys, caller(user, device), PublishKeysFrame.model_validate(frame))


def page(chat_id: str, by: str, cursor: str | None = None) -> dict[str, Any]:
    frame = GetChatDevicesFrame.model_validate(
        {"action": "getChatDevices", "requestId": "r", "chatId": chat_id, "cursor": cursor}
    )
    answer = get_chat_devices(services().store, services().keys, services().io_pool, caller(by), frame)
    return dict(json.loads(answer.to_json()))


def every_page(chat_id: str, by: str) -> list[dict[str, Any]]:
    pages = [page(chat_id, by)]
    while pages[-1]["next"] is not None:
        pages.append(page(chat_id, by, pages[-1]["next"]))
        assert len(pages) < 100
    return pages


def listed(pages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["userId"], d["deviceId"]) for p in pages for d in p["devices"]]


# --- getChatDevices ------------------------------------------------------------------------------


def test_a_member_gets_every_device_of_every_current_member_its_own_included(
    aws_env: AwsEnv, ledger: Ledger, group_id: str
) -> None:
    # Given a group of alice (phone, laptop), bob (phone, with a signing key), carol (no keys) and
    # dave, who was removed; and erin, who is in no chat with them
    publish_as("u_alice", "d_phone")
    publish_as("u_alice", "d_laptop")
    publish_as("u_bob", "d_phone", signing="sk-bob")
    publish_as("u_dave", "d_phone")
    publish_as("u_erin", "d_phone")
    remove(ledger, caller("u_alice"), group_id, ["u_dave"])
    # When bob asks for the chat's devices
    answer = page(group_id, "u_bob")
    # Then he gets alice's two, his own (with its signing key), and nobody else's, in one page
    assert answer == {
        "type": "CHAT_DEVICES",
        "requestId": "r",
        "chatId": group_id,
        "devices": [
            {"userId": "u_alice", "deviceId": "d_laptop", "identityKey": b64("ik-u_alice-d_laptop")},
            {"userId": "u_alice", "deviceId": "d_phone", "identityKey": b64("ik-u_alice-d_phone")},
            {
                "userId": "u_bob",
                "deviceId": "d_phone",
                "identityKey": b64("ik-u_bob-d_phone"),
                "signingKey": b64("sk-bob"),
            },
        ],
        "next": None,
    }


@pytest.mark.parametrize("who", ["u_dave", "u_erin"])
def test_a_removed_member_or_a_stranger_is_forbidden_as_for_a_chat_that_does_not_exist(
    aws_env: AwsEnv, ledger: Ledger, make_chat: MakeChat, who: str
) -> None:
    # Given a group dave was removed from and erin was never in
    chat_id = make_chat("u_alice", "u_bob", "u_dave")
    remove(ledger, caller("u_alice"), chat_id, ["u_dave"])
    # When either asks for its devices, or for a chat that does not exist, Then FORBIDDEN
    for chat in (chat_id, "c_nowhere"):
        with pytest.raises(Exception) as refused:
            page(chat, who)
        assert getattr(refused.value, "code", None) == "FORBIDDEN"


def test_pages_list_each_device_once_and_a_member_with_many_devices_goes_on_on_the_next_page(
    aws_env: AwsEnv, make_chat: MakeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given pages of 2 members and 3 devices, and a group where bob has 7 devices
    monkeypatch.setattr(device_lists, "MEMBERS_PER_PAGE", 2)
    monkeypatch.setattr(device_lists, "DEVICES_PER_PAGE", 3)
    chat_id = make_chat("u_alice", "u_bob", "u_carol", "u_dave", "u_erin")
    expected = []
    for user, devices in (("u_alice", 1), ("u_bob", 7), ("u_carol", 0), ("u_dave", 2), ("u_erin", 1)):
        for n in range(devices):
            publish_as(user, f"d_{n}")
            expected.append((user, f"d_{n}"))
    # When alice pages through the chat's devices
    pages = every_page(chat_id, "u_alice")
    # Then every device comes once, in order, no page over its size
    assert listed(pages) == expected
    assert all(len(p["devices"]) <= 3 for p in pages)
    # And a page that stopped inside bob's devices names where (opaque to the client)
    assert pages[0]["next"] == "u_bob.d_1"


def test_pages_stay_within_the_frame_budget_whatever_the_keys_size(
    aws_env: AwsEnv, make_chat: MakeChat
) -> None:
    # Given a group whose three members publish 30 devices each, every key the largest allowed
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    big = base64.b64encode(b"k" * 1024).decode()
    for user in ("u_alice", "u_bob", "u_carol"):
        for n in range(30):
            frame = publish_frame(f"d_{n:02d}", []) | {"identityKey": big, "signingKey": big}
            publish_keys(services().keys, caller(user, f"d_{n:02d}"), PublishKeysFrame.model_validate(frame))
    # When bob pages through them
    pages = every_page(chat_id, "u_bob")
    # Then all 90 come, each page under the budget (well within API Gateway's 128 KiB)
    assert len(listed(pages)) == len(set(listed(pages))) == 90
    assert len(pages) > 1
    assert all(len(json.dumps(p, separators=(",", ":"))) <= ANSWER_BUDGET_BYTES for p in pages)


@dataclass
class BigGroup:
    """A chats store (its member store is itself) and a key store of one group of `size` members
    with the longest ids, two devices each with Olm's keys (43 base64 characters): only what
    getChatDevices reads."""

    size: int
    users: list[str] = field(init=False)
    user_set: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.users = [f"u{i:063d}" for i in range(self.size)]
        self.user_set = set(self.users)

    @property
    def members(self) -> BigGroup:
        return self

    def membership(self, chat_id: str, user_ids: list[str]) -> MembershipContext:
        meta = ChatMeta(
            chat_id=chat_id, kind="group", name=None, head_seq=0, member_count=self.size, created_at="x"
        )
        return MembershipContext(meta, {u: "member" for u in user_ids if u in self.user_set}, {})

    def page(self, chat_id: str, after: str | None, limit: int) -> tuple[list[tuple[str, str]], str | None]:
        start = bisect.bisect_right(self.users, after) if after else 0
        page = [(u, "member") for u in self.users[start : start + limit]]
        return page, page[-1][0] if start + limit < self.size else None

    def devices(self, user_id: str, after: str | None = None, limit: int | None = None) -> list[DeviceRecord]:
        spk = SignedPreKeyRecord(1, "k" * 43, "s" * 86)
        ids = [d for d in ("d" * 63 + "1", "d" * 63 + "2") if after is None or d > after]
        return [DeviceRecord(d, "i" * 43, spk, "e" * 43) for d in ids][:limit]


def test_a_ten_thousand_member_group_pages_through_in_a_bounded_number_of_calls(
    io_pool: ThreadPoolExecutor,
) -> None:
    # Given a 10,000-member group, two devices each, the longest ids and Olm's keys
    group = BigGroup(10_000)
    frame = {"action": "getChatDevices", "requestId": "r" * 128, "chatId": "c" * 64}
    # When a member pages through its devices
    pages: list[str] = []
    cursor = None
    while not pages or cursor is not None:
        asked = GetChatDevicesFrame.model_validate(frame | {"cursor": cursor})
        answer = get_chat_devices(group, group, io_pool, caller(group.users[0]), asked)  # type: ignore[arg-type]
        pages.append(answer.to_json())
        cursor = answer.next
    # Then all 20,000 devices come, once each, in at most 50 calls of frames within the budget
    got = [(d["userId"], d["deviceId"]) for p in pages for d in json.loads(p)["devices"]]
    assert len(got) == len(set(got)) == 20_000
    assert len(pages) <= 50
    assert max(len(p.encode()) for p in pages) <= ANSWER_BUDGET_BYTES < MAX_FRAME_BYTES


def test_a_bad_cursor_is_bad_request_and_the_route_is_served_by_the_keys_function(
    aws_env: AwsEnv, handler_of: Callable[[str], Handler], lambda_context: Any, make_chat: MakeChat
) -> None:
    # Given a chat of alice and bob
    chat_id = make_chat("u_alice", "u_bob")
    publish_as("u_bob", "d_phone")
    keys_handler = handler_of("keys")
    frame = {"action": "getChatDevices", "requestId": "r", "chatId": chat_id}
    # When alice asks through the keys function, Then she gets bob's device
    answer = call(keys_handler, lambda_context, frame, "u_alice")
    assert (answer["type"], listed([answer])) == ("CHAT_DEVICES", [("u_bob", "d_phone")])
    # When the cursor is not one the server makes, Then BAD_REQUEST echoing the requestId
    for cursor in ("u_bob.", "u_bob.d.x", "a b", 5):
        refused = call(keys_handler, lambda_context, frame | {"cursor": cursor}, "u_alice")
        assert (refused["type"], refused["code"], refused["requestId"]) == ("ERROR", "BAD_REQUEST", "r")


# --- DEVICES_CHANGED -----------------------------------------------------------------------------


@pytest.fixture
def news(aws_env: AwsEnv, pusher: Pusher) -> DeviceNews:
    svc = services()
    return DeviceNews(svc.listing, svc.store, svc.consent, svc.limiter, pusher, direct_push_max_members=256)


def announce(news: DeviceNews, by: Caller, identity: str, key_ids: list[int] | None = None) -> None:
    frame = publish_frame(by.device_id, key_ids or [1]) | {"identityKey": b64(identity)}
    publish_keys(services().keys, by, PublishKeysFrame.model_validate(frame), news)


def told(news: DeviceNews) -> dict[str, list[dict[str, Any]]]:
    """What the news' pusher posted since the last look, by connection."""
    poster: RecordingPoster = news.pusher.poster  # type: ignore[assignment]
    found: dict[str, list[dict[str, Any]]] = {}
    for connection, frame in poster.posts:
        found.setdefault(connection, []).append(frame)
    poster.posts.clear()
    return found


def test_a_new_device_and_a_new_identity_key_are_pushed_to_those_who_share_a_chat_and_a_top_up_is_not(
    news: DeviceNews, make_chat: MakeChat
) -> None:
    # Given alice's direct chat with bob and group with carol, all online; alice's laptop online;
    # erin online, sharing no chat with alice
    make_chat("u_alice", "u_bob", kind="direct")
    make_chat("u_carol", "u_alice")
    for user, device in (("u_alice", "d_laptop"), ("u_bob", "d_phone"), ("u_carol", "d_phone")):
        online(news.pusher.registry, user, device)
    online(news.pusher.registry, "u_erin", "d_phone")
    others = {"conn-u_alice-d_laptop", "conn-u_bob-d_phone", "conn-u_carol-d_phone"}
    phone = caller("u_alice", "d_phone")
    # When alice's phone publishes its keys for the first time
    announce(news, phone, "ik-1")
    # Then her laptop, bob and carol are told a device was added, and erin nothing
    added = {"type": "DEVICES_CHANGED", "userId": "u_alice", "deviceId": "d_phone", "change": "added"}
    assert told(news) == {c: [added] for c in others}
    # When it tops up its one-time prekeys with the same identity key, Then nobody is told
    announce(news, phone, "ik-1", [2, 3])
    assert told(news) == {}
    # When it publishes a new identity key (a reinstall), Then they are told its keys changed
    announce(news, phone, "ik-2")
    assert told(news) == {c: [added | {"change": "keysChanged"}] for c in others}


def test_members_of_large_groups_and_blockers_are_not_told(
    news: DeviceNews, make_chat: MakeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given groups of at most 3 members are told; alice in a group of 3 with bob and carol, in a
    # group of 4 with dave, and carol blocks alice
    monkeypatch.setattr(device_lists, "NEWS_GROUP_MAX", 3)
    make_chat("u_alice", "u_bob", "u_carol")
    make_chat("u_alice", "u_dave", "u_x1", "u_x2")
    services().consent.block("u_carol", "u_alice", 0)
    for user in ("u_bob", "u_carol", "u_dave"):
        online(news.pusher.registry, user, "d_phone")
    # When alice adds a device
    announce(news, caller("u_alice", "d_new"), "ik")
    # Then only bob is told: dave reads getChatDevices, carol hears nothing of alice
    assert set(told(news)) == {"conn-u_bob-d_phone"}


def test_announcements_are_limited_per_user_and_the_keys_are_stored_anyway(
    news: DeviceNews, make_chat: MakeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a budget of 2 announcements, and bob in a direct chat with alice
    monkeypatch.setattr(device_lists, "DEVICE_ANNOUNCEMENTS", Rate(2, 1 / 3600))
    make_chat("u_alice", "u_bob", kind="direct")
    online(news.pusher.registry, "u_bob", "d_phone")
    # When alice adds three devices
    for n in range(3):
        announce(news, caller("u_alice", f"d_{n}"), f"ik-{n}")
    # Then bob is told of the first two only, and all three are stored
    assert [f["deviceId"] for f in told(news)["conn-u_bob-d_phone"]] == ["d_0", "d_1"]
    assert len(services().keys.devices("u_alice")) == 3


def test_a_large_audience_goes_through_the_delivery_queue(
    aws_env: AwsEnv, news: DeviceNews, make_chat: MakeChat
) -> None:
    # Given only audiences of at most 2 users are pushed by the keys function itself
    small = DeviceNews(news.listing, news.chats, news.consent, news.limiter, news.pusher, 2)
    make_chat("u_alice", "u_bob", "u_carol")
    for user in ("u_bob", "u_carol"):
        online(news.pusher.registry, user, "d_phone")
    # When alice adds a device
    announce(small, caller("u_alice", "d_new"), "ik")
    # Then nothing was posted at once, and one envelope holds both recipients
    assert told(news) == {}
    [envelope] = [json.loads(m["Body"]) for m in aws_env.receive_all()]
    assert json.loads(envelope["frame"])["type"] == "DEVICES_CHANGED"
    assert {r["u"] for r in envelope["recipients"]} == {"u_bob", "u_carol"}


def test_a_failed_announcement_never_fails_the_publish(
    news: DeviceNews, make_chat: MakeChat, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a chat listing that fails
    make_chat("u_alice", "u_bob", kind="direct")

    def broken(*args: Any) -> Any:
        raise RuntimeError("DynamoDB is down")

    monkeypatch.setattr(news.listing, "page", broken)
    # When alice publishes a new device, Then the publish is answered and her keys are stored
    announce(news, caller("u_alice", "d_new"), "ik")
    assert [d.device_id for d in services().keys.devices("u_alice")] == ["d_new"]
