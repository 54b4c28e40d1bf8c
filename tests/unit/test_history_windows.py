"""History windows (PROTOCOL.md v1.1): a member sees its chat from the `added` announcement naming
it through the `removed` one, in sync, receipts and receipt counts alike (media: test_media.py;
live pushes go by the membership version a message was stored under: test_fanout.py)."""

from __future__ import annotations

from typing import Any

import pytest

from chat_backend.dal.receipt_store import ReceiptStore
from chat_backend.errors import NotFound
from chat_backend.logic.receipts import list_receipts, summarize
from chat_backend.logic.send import Ledger
from chat_backend.logic.sync import sync
from chat_backend.models.client_frames import ReceiptsQueryFrame, SyncFrame
from chat_backend.models.queue_payloads import SummaryJob
from chat_backend.models.server_frames import SyncDoneFrame
from tests.unit.conftest import RecordingPoster
from tests.unit.helpers import (
    GRACE_S,
    MakeChat,
    Receipting,
    add,
    caller,
    online,
    pushed,
    remove,
    send,
    watermark,
)


def syncing(
    ledger: Ledger, poster: RecordingPoster, user: str, cursors: dict[str, int]
) -> tuple[SyncDoneFrame, list[int]]:
    """A sync by `user` from `cursors`: its SYNC_DONE and the seqs it replayed."""
    poster.posts.clear()
    frame = SyncFrame.model_validate({"action": "sync", "requestId": "s", "cursors": cursors})
    done = sync(ledger, poster, caller(user), frame, GRACE_S)
    return done, [f["seq"] for f in poster.frames()]


@pytest.fixture
def history(ledger: Ledger, make_chat: MakeChat) -> str:
    """alice's group with bob: three messages (seqs 1-3), then carol added at seq 4."""
    chat_id = make_chat("u_alice", "u_bob")
    for who in ("u_alice", "u_bob", "u_alice"):
        send(ledger, who, chat_id)
    add(ledger, caller("u_alice"), chat_id, ["u_carol"])
    return chat_id


def test_a_member_added_later_syncs_from_its_added_announcement_and_is_told_where_it_starts(
    ledger: Ledger, poster: RecordingPoster, history: str
) -> None:
    # Given carol was added at seq 4 and a message followed
    send(ledger, "u_bob", history)
    # When carol syncs from nothing
    done, replayed = syncing(ledger, poster, "u_carol", {})
    # Then she gets her `added` announcement and what followed, nothing earlier
    assert replayed == [4, 5]
    # And SYNC_DONE says where her window starts, and not for the founding members
    assert (done.heads, done.starts) == ({history: 5}, {history: 4})
    assert '"starts":{' in done.to_json()
    founder, _ = syncing(ledger, poster, "u_bob", {})
    assert founder.starts == {} and '"starts"' not in founder.to_json()


def test_a_removed_member_syncs_its_window_through_the_removal_and_its_head_stays_there(
    ledger: Ledger, poster: RecordingPoster, history: str
) -> None:
    # Given carol (added at 4) got message 5 before alice removed her at 6, and 7 followed
    send(ledger, "u_bob", history)
    remove(ledger, caller("u_alice"), history, ["u_carol"])
    send(ledger, "u_bob", history)
    # When carol's device, offline since seq 4, syncs naming the chat
    done, replayed = syncing(ledger, poster, "u_carol", {history: 4})
    # Then it gets 5 and its removal, nothing after, and the chat's head stays at the removal
    assert replayed == [5, 6]
    assert done.heads == {history: 6} and done.starts == {history: 4}
    # And synced up to it, nothing more comes
    again, replayed = syncing(ledger, poster, "u_carol", {history: 6})
    assert (replayed, again.heads) == ([], {history: 6})
    # And a stranger naming the chat learns nothing of it
    stranger, replayed = syncing(ledger, poster, "u_mallory", {history: 0})
    assert (replayed, stranger.heads, stranger.starts) == ([], {}, {})


def test_a_member_added_back_gets_a_new_window_from_its_new_announcement(
    ledger: Ledger, poster: RecordingPoster, history: str
) -> None:
    # Given carol was removed at 5, a message went to the others at 6, and she was added back at 7
    remove(ledger, caller("u_alice"), history, ["u_carol"])
    send(ledger, "u_alice", history)
    add(ledger, caller("u_alice"), history, ["u_carol"])
    # When she syncs from her removal
    done, replayed = syncing(ledger, poster, "u_carol", {history: 5})
    # Then the message sent while she was out is not hers: her new window starts at 7
    assert replayed == [7]
    assert (done.heads, done.starts) == ({history: 7}, {history: 7})


def test_receipts_of_a_member_added_later_cover_only_its_window(
    aws_env: Any,
    ledger: Ledger,
    registry: Any,
    receipt: Receipting,
    receipts: ReceiptStore,
    poster: RecordingPoster,
    history: str,
) -> None:
    # Given alice (online) sent seqs 1 and 3 before carol was added at 4, and bob sent 5
    online(registry, "u_alice")
    online(registry, "u_bob")
    fifth = send(ledger, "u_bob", history)
    first_id = ReceiptsQueryFrame.model_validate(
        {
            "action": "receipts",
            "requestId": "q",
            "chatId": history,
            "serverMsgId": aws_env.messages(history)[0]["serverMsgId"],
        }
    )
    poster.posts.clear()
    # When carol receipts a message before her window by id
    with pytest.raises(NotFound):
        receipt("u_carol", history, "READ", msg=first_id.server_msg_id)
    # And a watermark below her window
    receipt("u_carol", history, "READ", up_to=3)
    # Then nothing is stored and nobody is told
    assert watermark(aws_env, history, "u_carol") == {} and pushed(poster) == []
    # When she reads up to 5
    receipt("u_carol", history, "READ", up_to=5)
    # Then only bob (sender of 5) is told; alice, whose messages came before carol, hears nothing
    [(connections, frame)] = pushed(poster)
    assert frame["type"] == "RECEIPT" and frame["userId"] == "u_carol" and len(connections) == 1
    assert watermark(aws_env, history, "u_carol")["since"] == 4
    # And alice's receipts query for her first message does not list carol, bob's for 5 does
    assert [e.user_id for e in list_receipts(receipts, caller("u_alice"), first_id).receipts] == []
    query_fifth = first_id.model_copy(update={"server_msg_id": fifth.server_msg_id})
    assert [e.user_id for e in list_receipts(receipts, caller("u_bob"), query_fifth).receipts] == ["u_carol"]


def test_a_receipt_summary_does_not_count_members_added_after_the_message(
    ledger: Ledger,
    receipt: Receipting,
    receipts: ReceiptStore,
    pusher: Any,
    registry: Any,
    poster: RecordingPoster,
    history: str,
) -> None:
    # Given bob and carol (added at 4) both read up to 4
    online(registry, "u_alice")
    receipt("u_bob", history, "READ", up_to=4)
    receipt("u_carol", history, "READ", up_to=4)
    poster.posts.clear()
    # When alice's message 1 is summarized
    first = ledger.messages.at(history, 1)
    assert first is not None
    job = SummaryJob(chat_id=history, seq=1, server_msg_id=first.server_msg_id, sender="u_alice")  # type: ignore[union-attr]
    summarize(receipts, pusher, [job])
    # Then only bob counts
    [(_, frame)] = pushed(poster)
    assert (frame["delivered"], frame["read"]) == (1, 1)
