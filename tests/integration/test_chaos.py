"""The short version of `make chaos` (chaos/): the frame fuzzer and the history checker under
every kind of fault, on a local stack of their own (they restart its gateway and pollers)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaos.fuzzer import run_fuzzer
from chaos.history import FAULT_KINDS, run_history
from chaos.mutations import valid_frames
from chaos.state import snapshotter
from chat_backend import wiring
from local_stack.child import RunningStack, start_local_stack

FUZZED_FRAMES = 3000
MESSAGES = 400


@pytest.fixture(scope="module")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_local_stack(
        tmp_path_factory.mktemp("chaos") / "local-stack.log", {"CHAT_LOG_LEVEL": "WARNING"}
    )
    yield running
    running.stop()


def test_the_fuzzer_starts_from_a_valid_frame_of_every_route_that_has_fields() -> None:
    # Given the routes of the wiring (heartbeat has no fields: it is fuzzed by broken shapes alone)
    routes = {r for f in wiring.FUNCTIONS for r in f.routes} - {
        "$connect",
        "$disconnect",
        "$default",
        "heartbeat",
    }
    # Then the fuzzer has a frame of each
    assert {f["action"] for f in valid_frames("c_1", "u_1")} == routes


async def test_mutated_frames_of_every_route_get_clear_refusals_and_change_nothing(
    chaos_stack: RunningStack,
) -> None:
    # Given a snapshot of everything the stack stores
    snapshot = snapshotter(chaos_stack.emulator_urls["dynamodb-local"], chaos_stack.emulator_urls["moto"])
    # When 3,000 mutated frames of every route go over 8 connections
    report = await run_fuzzer(chaos_stack, FUZZED_FRAMES, snapshot=snapshot)
    # Then every kind of mutation was tried, and every frame got a BAD_REQUEST or TOO_LARGE
    assert report.frames == FUZZED_FRAMES
    assert set(report.by_mutation) == {"bad_field", "missing_field", "receipt_forms", "structural"}
    assert set(report.answers) <= {"BAD_REQUEST", "TOO_LARGE"}, report.lines()
    # And none was INTERNAL, unanswered or accepted, no connection dropped, nothing stored changed
    assert (report.internal, report.accepted, report.unanswered, report.dropped, report.state_changes) == (
        0,
        0,
        0,
        0,
        0,
    ), report.lines()


async def test_a_history_under_every_kind_of_fault_is_stored_once_and_seen_whole_and_in_order(
    chaos_stack: RunningStack,
) -> None:
    # Given 12 users in direct chats and groups
    # When they send 400 messages while faults of every kind go in (connections dropped,
    # PostToConnection failing, functions crashing mid-batch, pollers and gateway restarted)
    report = await run_history(chaos_stack, MESSAGES, fault_pause_s=(0.2, 0.4))
    # Then every kind was injected, and the crash and post faults went off
    assert set(report.faults) == set(FAULT_KINDS), report.lines()
    assert report.fired > 0
    # And every message was ACKed, stored once at its ACKed seq, and reached every member device
    # once, in seq order
    assert report.messages + report.unacked == MESSAGES and report.unacked == 0, report.lines()
    assert (report.stored_twice, report.wrong_seq, report.lost, report.duplicated, report.reordered) == (
        0,
        0,
        0,
        0,
        0,
    ), report.lines()
