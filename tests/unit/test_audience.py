"""Who a queued item goes to (logic/audience.py, through logic/fanout.py): the members at the item's
membership version, read once per (chat, version) and kept in the warm function's cache; a
fan-out that lags behind a membership change rebuilds the older list from the announcements."""

from __future__ import annotations

import json
import time
from typing import Any

from chat_backend.dal.connections import ConnectionRegistry
from chat_backend.logic import holes
from chat_backend.logic.audience import MemberListCache, members_at, recipients_of
from chat_backend.logic.fanout import fan_out
from chat_backend.logic.push import Pusher
from chat_backend.logic.send import Ledger, SendPolicy, send_message
from chat_backend.models.events import Caller
from chat_backend.models.queue_payloads import DeliveryEnvelope
from chat_backend.models.records import Stored, StoredMessage
from tests.unit.helpers import CountingDdb, MakeChat, add, caller, chats_on, online_all, remove, send_frame

QUEUED = SendPolicy(dedup_ttl_s=3600, direct_push_max_members=0)  # every message goes by the stream


def say(ledger: Ledger, who: Caller, chat_id: str, text: str) -> StoredMessage:
    """`text` sent as a message for the stream to fan out."""
    return send_message(ledger, who, send_frame(chat_id, text), QUEUED).message


def reached(aws_env: Any) -> dict[int, set[str]]:
    """seq -> the users whose connections its frame was queued for."""
    found: dict[int, set[str]] = {}
    for raw in aws_env.receive_all():
        envelope = DeliveryEnvelope.model_validate_json(raw["Body"])
        found.setdefault(json.loads(envelope.frame)["seq"], set()).update(
            r.user_id for r in envelope.recipients
        )
    return found


def test_a_member_removed_right_after_a_message_still_receives_it(
    aws_env: Any, ledger: Ledger, pusher: Pusher, registry: ConnectionRegistry, make_chat: MakeChat
) -> None:
    # Given alice's group with bob and carol, all online; alice sends message 1, and her removal of
    # bob (seq 2) commits before the stream's fan-out gets to message 1
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    online_all(registry, "u_alice", "u_bob", "u_carol", device_id="d1")
    alice = caller("u_alice", "d1")
    first = say(ledger, alice, chat_id, "one")
    remove(ledger, alice, chat_id, ["u_bob"])
    cache = MemberListCache()
    # When message 1 is fanned out
    fan_out(ledger.chats, ledger.messages, cache, pusher, [first])
    # Then bob gets it: he was a member when it was sent
    assert reached(aws_env) == {1: {"u_bob", "u_carol"}}
    # And the list kept for message 1's version is that version's (with bob), not the current one
    assert sorted(cache.get(chat_id, 0) or []) == ["u_alice", "u_bob", "u_carol"]
    # And alice's next message, sent after the removal, goes to carol alone, through the same cache
    after = say(ledger, alice, chat_id, "two")
    fan_out(ledger.chats, ledger.messages, cache, pusher, [after])
    assert reached(aws_env) == {3: {"u_carol"}}
    assert sorted(cache.get(chat_id, 1) or []) == ["u_alice", "u_carol"]
    # And a retried batch of message 1 still reaches bob
    fan_out(ledger.chats, ledger.messages, cache, pusher, [first])
    assert reached(aws_env) == {1: {"u_bob", "u_carol"}}


def test_members_added_after_a_message_do_not_receive_it_but_get_their_own_announcement(
    aws_env: Any, ledger: Ledger, pusher: Pusher, registry: ConnectionRegistry, make_chat: MakeChat
) -> None:
    # Given alice's group with bob, all online, and dave online; alice sends message 1, then adds dave
    chat_id = make_chat("u_alice", "u_bob")
    online_all(registry, "u_alice", "u_bob", "u_dave", device_id="d1")
    alice = caller("u_alice", "d1")
    say(ledger, alice, chat_id, "before dave")
    add(ledger, alice, chat_id, ["u_dave"])
    # When the stream fans out both in one batch
    fan_out(ledger.chats, ledger.messages, MemberListCache(), pusher, ledger.messages.after(chat_id, 0, 10))
    # Then message 1 reaches bob only, and dave gets the announcement of his add
    assert reached(aws_env) == {1: {"u_bob"}, 2: {"u_alice", "u_bob", "u_dave"}}


def test_members_at_rebuilds_every_older_version_from_the_announcements_since(
    aws_env: Any, ledger: Ledger, make_chat: MakeChat
) -> None:
    # Given a chat whose membership moved on after each of its items:
    # 1 message (v0) | 2 dave added (v1) | 3 message (v1) | 4 bob removed (v2)
    # | 5 VOID of an abandoned change (stamped v2, the version of the item before it: the abandoned
    # change, v3, changed nobody) | 6 erin added, bob back (v4)
    chat_id = make_chat("u_alice", "u_bob", "u_carol")
    alice = caller("u_alice")
    say(ledger, alice, chat_id, "one")
    add(ledger, alice, chat_id, ["u_dave"])
    say(ledger, alice, chat_id, "three")
    remove(ledger, alice, chat_id, ["u_bob"])
    ledger.sequencer.begin_change(chat_id, 2, "dead", int((time.time() - 60) * 1000))
    add(ledger, alice, chat_id, ["u_erin", "u_bob"])
    items: list[Stored] = ledger.messages.after(chat_id, 0, 10)
    assert [(i.seq, i.members_version) for i in items] == [
        (n, v) for n, v in enumerate([0, 1, 1, 2, 2, 4], 1)
    ]
    # When each item's members are read now, each with a cold cache
    found = {
        i.seq: sorted(
            members_at(
                ledger.chats, ledger.messages, MemberListCache(), chat_id, i.members_version or 0, i.seq
            )
        )
        for i in items
    }
    # Then each is the membership the item was stored under
    abc, abcd = ["u_alice", "u_bob", "u_carol"], ["u_alice", "u_bob", "u_carol", "u_dave"]
    acd = ["u_alice", "u_carol", "u_dave"]
    assert found == {
        1: abc,
        2: abcd,
        3: abcd,
        4: acd,
        5: acd,
        6: ["u_alice", "u_bob", "u_carol", "u_dave", "u_erin"],
    }


def test_member_lists_are_read_once_per_chat_and_version_across_batches(
    aws_env: Any, ledger: Ledger, pusher: Pusher, registry: ConnectionRegistry, make_chat: MakeChat
) -> None:
    # Given a group with bob online, one warm cache, and a store that counts member-list queries
    chat_id = make_chat("u_alice", "u_bob")
    online_all(registry, "u_bob", "u_carol", device_id="d1")
    alice = caller("u_alice", "d1")
    ddb = CountingDdb(ledger.chats.ddb)
    chats = chats_on(ledger.chats, ddb)
    cache = MemberListCache()
    # When three messages at version 0 are fanned out in three stream batches
    for text in ("one", "two", "three"):
        fan_out(chats, ledger.messages, cache, pusher, [say(ledger, alice, chat_id, text)])
    # Then the members were queried once
    assert ddb.member_queries == [chat_id]
    # And when carol is added (version 1), her announcement and the next message read version 1 once
    add(ledger, alice, chat_id, ["u_carol"])
    fan_out(chats, ledger.messages, cache, pusher, ledger.messages.after(chat_id, 3, 10))
    fan_out(chats, ledger.messages, cache, pusher, [say(ledger, alice, chat_id, "five")])
    assert ddb.member_queries == [chat_id, chat_id]
    both = {"u_bob", "u_carol"}
    assert reached(aws_env) == {1: {"u_bob"}, 2: {"u_bob"}, 3: {"u_bob"}, 4: both, 5: both}


def test_member_lists_are_read_once_per_chat_and_version_within_a_batch(
    aws_env: Any, ledger: Ledger, pusher: Pusher, registry: ConnectionRegistry, make_chat: MakeChat
) -> None:
    # Given a group with bob online, and a store whose member queries take 50 ms
    chat_id = make_chat("u_alice", "u_bob")
    online_all(registry, "u_bob", device_id="d1")
    alice = caller("u_alice", "d1")
    batch = [say(ledger, alice, chat_id, text) for text in ("one", "two", "three")]
    ddb = CountingDdb(ledger.chats.ddb, member_query_delay_s=0.05)
    chats = chats_on(ledger.chats, ddb)
    # When one stream batch of three messages at version 0 is fanned out
    fan_out(chats, ledger.messages, MemberListCache(), pusher, batch)
    # Then all three reached bob, and the member list was queried once
    assert reached(aws_env) == {1: {"u_bob"}, 2: {"u_bob"}, 3: {"u_bob"}}
    assert ddb.member_queries == [chat_id]


def test_a_void_filled_while_a_membership_change_is_in_flight_is_fanned_out(
    aws_env: Any, ledger: Ledger, pusher: Pusher, registry: ConnectionRegistry, make_chat: MakeChat
) -> None:
    # Given a group whose seq 1 was reserved by a sender that died, then an add in flight at seq 2,
    # and a sync filling seq 1 with a VOID meanwhile
    chat_id = make_chat("u_alice", "u_bob")
    online_all(registry, "u_alice", "u_bob", device_id="d1")
    ledger.sequencer.reserve(chat_id, 0, int(time.time() * 1000))
    ledger.sequencer.begin_change(chat_id, 0, "in-flight", int(time.time() * 1000))
    chat = ledger.chats.get_chat(chat_id)
    assert chat is not None
    void = holes.fill_hole(ledger.messages, ledger.sequencer, chat, 1, int(time.time() * 1000))
    # When the stream fans the VOID out
    fan_out(ledger.chats, ledger.messages, MemberListCache(), pusher, [void])
    # Then both members are told seq 1 carries nothing
    assert reached(aws_env) == {1: {"u_alice", "u_bob"}}


def test_the_member_list_cache_is_bounded_by_the_member_ids_it_holds() -> None:
    # Given a cache holding at most 5 member ids, with a 3-member list of c_a then of c_b
    cache = MemberListCache(max_members=5)
    cache.put("c_a", 1, ["u_1", "u_2", "u_3"])
    cache.put("c_b", 1, ["u_4", "u_5", "u_6"])
    # When the lists are looked up
    # Then the least recently used one (c_a) was dropped to make room, and c_b is kept
    assert cache.get("c_a", 1) is None
    assert cache.get("c_b", 1) == ["u_4", "u_5", "u_6"]
    # And a list is only ever the one first put for its version
    cache.put("c_b", 1, ["u_other"])
    assert cache.get("c_b", 1) == ["u_4", "u_5", "u_6"]
    assert cache.get("c_b", 2) is None


def test_recipients_are_every_connected_device_of_every_member_but_the_sending_one() -> None:
    # Given members alice (phone + laptop online), bob (phone + tablet online) and carol (offline),
    # and dave online but not a member
    members = ["u_alice", "u_bob", "u_carol"]
    devices = {
        "u_alice": {"d_phone": "c-a-phone", "d_laptop": "c-a-laptop"},
        "u_bob": {"d_phone": "c-b-phone", "d_tablet": "c-b-tablet"},
        "u_dave": {"d_phone": "c-d-phone"},
    }
    # When alice's phone sends, when alice (any device) types, and when the system announces
    sent = recipients_of(members, devices, "u_alice", "d_phone")
    typed = recipients_of(members, devices, "u_alice", None)
    announced = recipients_of(members, devices, None, None)
    # Then a message skips only her phone, a typing notice all her devices, an announcement nobody
    assert {r.connection_id for r in sent} == {"c-a-laptop", "c-b-phone", "c-b-tablet"}
    assert {r.connection_id for r in typed} == {"c-b-phone", "c-b-tablet"}
    assert {r.connection_id for r in announced} == {"c-a-phone", "c-a-laptop", "c-b-phone", "c-b-tablet"}
    assert len(sent) == 3
