"""The authorization matrix (issue 9): every route, tried by a stranger, a user the chat's admin
blocked, a removed member, a member, the admin and the admin's other device, over raw WebSockets
so that every frame each of them receives is seen. Each gets the answer its standing allows, and
nothing reaches anyone it must not: 0 leaks.

The scene: group G of alice (admin), bob, dave and carol, where carol was removed after message 1;
direct chats alice-bob (both wrote) and alice-dave (alice blocked dave); mallory knows nobody.
It is built in authorization_scene.py; the matrix's rows are in authorization_matrix_rows.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from chat_backend import wiring
from local_stack.child import RunningStack
from tests.integration.authorization_matrix_rows import ACTORS, MATRIX, outcome
from tests.integration.authorization_scene import Scene, open_scene


@pytest.fixture
async def scene(stack: RunningStack, new_user: Callable[[str], str]) -> AsyncIterator[Scene]:
    async with open_scene(stack, new_user) as built:
        yield built


def test_the_matrix_tries_every_route_a_client_may_send() -> None:
    # Given the routes of the wiring table (API Gateway's own $connect / $disconnect / $default
    # aside) / When the matrix's rows are named by route / Then none is left out
    tried = {route.split(" ")[0] for route, _, _ in MATRIX}
    assert set(wiring.routes()) - {"$connect", "$disconnect", "$default"} == tried


async def test_every_route_answers_each_standing_as_it_may_and_nothing_leaks(scene: Scene) -> None:
    # Given the scene (module docstring)
    s = scene
    seen_before = {name: len(actor.frames) for name, actor in s.actors.items()}
    # When every actor tries every route
    got: dict[tuple[str, str], dict[str, Any]] = {}
    for route, build, _ in MATRIX:
        for name in ACTORS:
            frame = build(s, name)
            actor = s.actors[name]
            quiet = frame["action"] in ("receipt", "typing")
            got[(route, name)] = await (actor.fire(frame) if quiet else actor.request(frame))
    await asyncio.sleep(1.5)  # the pushes of what was accepted arrive
    # Then each got the answer its standing allows
    wrong = [
        f"{route} by {name}: {outcome(got[(route, name)])}, expected {want[name]}"
        for route, _, want in MATRIX
        for name in ACTORS
        if outcome(got[(route, name)]) != want[name]
    ]
    assert wrong == []
    # And what each answer tells is theirs to know
    leaks = _answer_leaks(s, got)
    # And nothing was pushed to anyone it must not reach
    leaks += _push_leaks(s, {name: actor.frames[seen_before[name] :] for name, actor in s.actors.items()})
    assert leaks == []


def _answer_leaks(s: Scene, got: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    leaks = []
    for name in ACTORS:
        heads = got[("sync", name)].get("heads", {})
        chats = {c["chatId"] for c in got[("listChats", name)]["chats"]}
        if name == "stranger" and ({s.group, s.direct_blocked, s.direct_open} & (set(heads) | chats)):
            leaks.append("the stranger's sync or listChats names the others' chats")
        if name == "removed":
            if heads.get(s.group) != s.removal_seq:
                leaks.append(f"the removed member's head of G is {heads.get(s.group)}, not its removal")
            if s.group in chats:
                leaks.append("listChats lists G to its removed member")
        keys = got[("fetchKeys", name)]["devices"] + got[("claimKeys", name)]["keys"]
        if name == "blocked" and any(d["oneTimePreKey"] is not None for d in keys):
            leaks.append("the blocked user claimed a one-time prekey of its blocker")
        listed = {d["userId"] for d in got[("getChatDevices", name)].get("devices", [])}
        if s.users["carol"] in listed:
            leaks.append(f"getChatDevices lists the removed member's devices to {name}")
        if name not in ("stranger", "removed") and listed != {s.users[u] for u in ("alice", "bob", "dave")}:
            leaks.append(f"getChatDevices lists {sorted(listed)} to {name}, not G's members' devices")
        added = got[("createChat (group with alice)", name)]
        if name == "blocked" and s.users["alice"] not in (added.get("notAdded") or []):
            leaks.append("the blocked user put its blocker in a group")
    return leaks


def _push_leaks(s: Scene, pushed: dict[str, list[dict[str, Any]]]) -> list[str]:
    leaks = []
    ours = {s.group, s.direct_blocked, s.direct_open}
    for name, frames in pushed.items():
        for f in frames:
            kind, chat = f.get("type"), f.get("chatId")
            if (
                name == "stranger"
                and kind in ("MESSAGE", "VOID", "TYPING", "RECEIPT", "RECEIPT_SUMMARY")
                and chat in ours
            ):
                leaks.append(f"stranger got {kind} of {chat}")
            if name == "stranger" and kind == "PRESENCE" and f.get("userId") in s.users.values():
                leaks.append("stranger got presence")
            if (
                name == "removed"
                and chat == s.group
                and (
                    kind in ("TYPING", "RECEIPT", "RECEIPT_SUMMARY")
                    or (kind in ("MESSAGE", "VOID") and f["seq"] > s.removal_seq)
                )
            ):
                leaks.append(f"removed member got {kind} of G after its removal")
            if name == "removed" and kind == "PONG" and s.group in (f.get("heads") or {}):
                leaks.append("removed member's PONG names G")
            blocker = name in ("admin", "other_device")
            from_dave = f.get("from") == s.users["dave"] or f.get("userId") == s.users["dave"]
            if (
                blocker
                and chat == s.direct_blocked
                and kind in ("MESSAGE", "TYPING", "RECEIPT")
                and from_dave
            ):
                leaks.append(f"the blocker got {kind} from the blocked user")
            if blocker and kind == "TO_DEVICE" and from_dave:
                leaks.append("the blocker got key material from the blocked user")
            if name in ("stranger", "removed") and kind == "TO_DEVICE":
                leaks.append(f"{name} got key material")
            if name == "blocked" and kind == "PRESENCE" and f.get("userId") == s.users["alice"]:
                leaks.append("the blocked user got its blocker's presence")
            # Their "createChat (group with alice)" made them share a group with alice alone.
            shares_with = (s.actors[name].user, s.users["alice"])
            if (
                kind == "DEVICES_CHANGED"
                and name in ("stranger", "removed")
                and f["userId"] not in shares_with
            ):
                leaks.append(f"{name} was told of {f['userId']}'s devices")
            if blocker and kind == "DEVICES_CHANGED" and from_dave:
                leaks.append("the blocker was told of the blocked user's devices")
    return leaks
