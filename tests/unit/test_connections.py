"""connections (dal/connections.py + logic/connections.py + functions/connect): which device is
reachable on which connection."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.logic.connections import connect
from chat_backend.models.common import epoch_ms
from tests.unit.helpers import caller
from tests.unit.lambda_events import connect_event, disconnect_event, load_handler

TTL_S = 7200


def test_register_makes_each_device_reachable(registry: ConnectionRegistry) -> None:
    # Given alice connects on two devices and bob on one
    connect(registry, caller("u_alice", "d_phone", "conn-a1"), TTL_S)
    connect(registry, caller("u_alice", "d_laptop", "conn-a2"), TTL_S)
    connect(registry, caller("u_bob", "d_phone", "conn-b1"), TTL_S)
    # When their devices are looked up, with a user who never connected
    devices = registry.devices_of(["u_alice", "u_bob", "u_carol"])
    # Then each device maps to its connection, and carol is absent
    assert devices == {
        "u_alice": {"d_phone": "conn-a1", "d_laptop": "conn-a2"},
        "u_bob": {"d_phone": "conn-b1"},
    }


def test_connection_record_expires_after_the_ttl(aws_env: Any, registry: ConnectionRegistry) -> None:
    # Given alice connects now
    before = int(time.time())
    connect(registry, caller("u_alice", "d_phone", "conn-a1"), TTL_S)
    # When her record is read
    [item] = aws_env.scan("connections")
    # Then it carries a TTL about two hours out, so a lost $disconnect does not leave it forever
    assert before + TTL_S <= int(item["expiresAt"]) <= int(time.time()) + TTL_S
    assert item["dev_d_phone"]["connectionId"] == "conn-a1"
    assert item["dev_d_phone"]["connectedAt"].endswith("Z")


def test_reconnect_replaces_the_devices_connection(registry: ConnectionRegistry) -> None:
    # Given alice's phone connected, then reconnected on a new connection
    connect(registry, caller("u_alice", "d_phone", "conn-old"), TTL_S)
    connect(registry, caller("u_alice", "d_phone", "conn-new"), TTL_S)
    # When her devices are looked up
    # Then only the newer connection is listed
    assert registry.devices_of(["u_alice"]) == {"u_alice": {"d_phone": "conn-new"}}


def test_disconnect_removes_the_device_when_its_connection_matches(registry: ConnectionRegistry) -> None:
    # Given alice connected on phone and laptop
    connect(registry, caller("u_alice", "d_phone", "conn-a1"), TTL_S)
    connect(registry, caller("u_alice", "d_laptop", "conn-a2"), TTL_S)
    # When the phone's connection closes
    registry.unregister("u_alice", "d_phone", "conn-a1")
    # Then the phone is no longer reachable and the laptop still is
    assert registry.devices_of(["u_alice"]) == {"u_alice": {"d_laptop": "conn-a2"}}


def test_late_disconnect_of_a_replaced_connection_keeps_the_newer_one(registry: ConnectionRegistry) -> None:
    # Given alice's phone reconnected (conn-new) before the old connection's $disconnect arrived
    connect(registry, caller("u_alice", "d_phone", "conn-old"), TTL_S)
    connect(registry, caller("u_alice", "d_phone", "conn-new"), TTL_S)
    # When the old connection's disconnect is processed
    removed = registry.unregister("u_alice", "d_phone", "conn-old")
    # Then nothing is removed: the newer connection stays
    assert removed is False
    assert registry.devices_of(["u_alice"]) == {"u_alice": {"d_phone": "conn-new"}}


def test_unregister_reports_whether_it_removed_something(registry: ConnectionRegistry) -> None:
    # Given bob's phone on conn-b1
    registry.register("u_bob", "d_phone", "conn-b1", "2026-11-28T03:00:00.000Z", 2_000_000_000)
    # When it is unregistered twice, and a never-connected user once
    first = registry.unregister("u_bob", "d_phone", "conn-b1")
    second = registry.unregister("u_bob", "d_phone", "conn-b1")
    stranger = registry.unregister("u_nobody", "d_phone", "conn-x")
    # Then only the first removed anything, and bob has no reachable device left
    assert (first, second, stranger) == (True, False, False)
    assert registry.devices_of(["u_bob", "u_nobody"]) == {}


def test_devices_of_looks_up_more_than_100_users(registry: ConnectionRegistry) -> None:
    # Given 101 users online (one more than a BatchGetItem holds)
    users = [f"u_{n:03d}" for n in range(101)]
    for user in users:
        registry.register(user, "d_phone", f"conn-{user}", "2026-11-28T03:00:00.000Z", 2_000_000_000)
    # When they are looked up at once, with offline ones mixed in
    devices = registry.devices_of([*users, "u_offline_1", "u_offline_2"])
    # Then all 101 are found, each with its connection
    assert devices == {user: {"d_phone": f"conn-{user}"} for user in users}


def test_beat_returns_the_previous_heartbeat_or_the_connect_time(registry: ConnectionRegistry) -> None:
    # Given alice's phone connected at 03:00:00.000
    registry.register("u_alice", "d_phone", "conn-a1", "2026-11-28T03:00:00.000Z", 2_000_000_000)
    connected_ms = epoch_ms("2026-11-28T03:00:00.000Z")
    # When it heartbeats twice
    first = registry.beat("u_alice", "d_phone", "conn-a1", connected_ms + 50_000)
    second = registry.beat("u_alice", "d_phone", "conn-a1", connected_ms + 100_000)
    # Then the first is told the connect time, the second the first heartbeat's time
    assert (first, second) == (connected_ms, connected_ms + 50_000)
    # And the device stays reachable on the same connection
    assert registry.devices_of(["u_alice"]) == {"u_alice": {"d_phone": "conn-a1"}}


def test_beat_of_a_replaced_or_unknown_connection_returns_none_and_writes_nothing(
    aws_env: Any, registry: ConnectionRegistry
) -> None:
    # Given alice's phone reconnected on conn-new
    registry.register("u_alice", "d_phone", "conn-old", "2026-11-28T03:00:00.000Z", 2_000_000_000)
    registry.register("u_alice", "d_phone", "conn-new", "2026-11-28T03:01:00.000Z", 2_000_000_000)
    before = aws_env.scan("connections")
    # When the old connection, a device never connected and a user never connected heartbeat
    # Then each is told None, and the record is untouched
    assert registry.beat("u_alice", "d_phone", "conn-old", 1_795_000_000_000) is None
    assert registry.beat("u_alice", "d_laptop", "conn-x", 1_795_000_000_000) is None
    assert registry.beat("u_nobody", "d_phone", "conn-y", 1_795_000_000_000) is None
    assert aws_env.scan("connections") == before


# --- the connect function ------------------------------------------------------------------------


@dataclass
class ConnectFunction:
    """functions/connect, handed the $connect and $disconnect events of a device's connection."""

    context: Any

    def connect(self, user_id: str, device_id: str, connection_id: str) -> dict[str, Any]:
        return load_handler("connect").handler(connect_event(user_id, device_id, connection_id), self.context)

    def disconnect(self, user_id: str, device_id: str, connection_id: str) -> dict[str, Any]:
        event = disconnect_event(user_id, device_id, connection_id)
        return load_handler("connect").handler(event, self.context)


@pytest.fixture
def connect_function(lambda_context: Any) -> ConnectFunction:
    return ConnectFunction(lambda_context)


def test_connect_function_registers_on_connect_and_unregisters_on_disconnect(
    registry: ConnectionRegistry, connect_function: ConnectFunction
) -> None:
    # Given the connect function, and alice's phone connecting on conn-a1 with the authorizer's identity
    # When $connect is handled
    connected = connect_function.connect("u_alice", "d_phone", "conn-a1")
    # Then the connection is accepted and her phone is reachable on it
    assert connected == {"statusCode": 200}
    assert registry.devices_of(["u_alice"]) == {"u_alice": {"d_phone": "conn-a1"}}
    # And when $disconnect is handled for it, the phone is no longer reachable
    disconnected = connect_function.disconnect("u_alice", "d_phone", "conn-a1")
    assert disconnected == {"statusCode": 200}
    assert registry.devices_of(["u_alice"]) == {}


def test_connect_function_ignores_disconnect_of_a_replaced_connection(
    registry: ConnectionRegistry, connect_function: ConnectFunction
) -> None:
    # Given alice's phone connected on conn-old, then again on conn-new
    connect_function.connect("u_alice", "d_phone", "conn-old")
    connect_function.connect("u_alice", "d_phone", "conn-new")
    # When conn-old's $disconnect arrives late
    connect_function.disconnect("u_alice", "d_phone", "conn-old")
    # Then the phone stays reachable on conn-new
    assert registry.devices_of(["u_alice"]) == {"u_alice": {"d_phone": "conn-new"}}
