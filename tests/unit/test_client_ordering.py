"""The SDK's reorder buffer: exactly once, in seq order, gaps held (never skipped) and reported."""

import pytest

from chat_client.ordering import Gap, ReorderBuffer


def test_in_order_items_are_released_at_once():
    # Given an empty buffer (every chat starts at cursor 0)
    buf: ReorderBuffer[str] = ReorderBuffer()
    # When seqs 1, 2, 3 arrive in order
    results = [buf.offer("c_1", seq, f"m{seq}") for seq in (1, 2, 3)]
    # Then each is released immediately and the cursor follows
    assert [r.released for r in results] == [["m1"], ["m2"], ["m3"]]
    assert not any(r.gap or r.duplicate for r in results)
    assert buf.cursor("c_1") == 3
    assert buf.cursors == {"c_1": 3}
    assert not buf.has_gaps()


def test_duplicates_are_dropped_whether_released_or_held():
    # Given seq 1 released and seq 3 held behind a gap
    buf: ReorderBuffer[str] = ReorderBuffer()
    buf.offer("c_1", 1, "m1")
    buf.offer("c_1", 3, "m3")
    # When both arrive again (at-least-once delivery)
    again_released = buf.offer("c_1", 1, "m1 again")
    again_held = buf.offer("c_1", 3, "m3 again")
    # Then both are reported as duplicates and nothing is released
    assert again_released.duplicate and again_released.released == []
    assert again_held.duplicate and again_held.released == []
    # And the held original is the one released once the gap fills
    assert buf.offer("c_1", 2, "m2").released == ["m2", "m3"]


def test_gap_is_held_and_reported_never_skipped():
    # Given a chat at cursor 2
    buf: ReorderBuffer[str] = ReorderBuffer({"c_1": 2})
    # When seq 5 arrives (3 and 4 missing)
    result = buf.offer("c_1", 5, "m5")
    # Then it is held, the gap is reported, and the cursor does not move
    assert result.gap and result.released == [] and not result.duplicate
    assert buf.cursor("c_1") == 2
    assert buf.held("c_1") == [5]
    assert buf.gaps() == [Gap("c_1", 3, 4)]
    assert buf.has_gaps() and buf.held_count() == 1


def test_out_of_order_fill_releases_consecutive_run():
    # Given seqs 4, 2, 5 arrived before 1 (and 3 is still missing)
    buf: ReorderBuffer[str] = ReorderBuffer()
    for seq in (4, 2, 5):
        assert buf.offer("c_1", seq, f"m{seq}").gap
    # When 1 arrives
    first = buf.offer("c_1", 1, "m1")
    # Then 1 and 2 are released, 4 and 5 still wait for 3
    assert first.released == ["m1", "m2"]
    assert buf.gaps() == [Gap("c_1", 3, 3)]
    # When 3 arrives
    # Then the rest is released in order and no gap remains
    assert buf.offer("c_1", 3, "m3").released == ["m3", "m4", "m5"]
    assert buf.cursor("c_1") == 5 and not buf.has_gaps()


def test_chats_are_independent():
    # Given two chats, one with a gap
    buf: ReorderBuffer[str] = ReorderBuffer()
    buf.offer("c_a", 2, "a2")
    # When the other chat receives its first message
    # Then it is released regardless of the first chat's gap
    assert buf.offer("c_b", 1, "b1").released == ["b1"]
    assert buf.cursor("c_a") == 0 and buf.held("c_a") == [2]


@pytest.mark.parametrize("bad", [0, -1, True, "3", 1.0])
def test_invalid_seq_is_rejected(bad):
    # Given a buffer, When a non-positive or non-int seq is offered, Then it raises ValueError
    with pytest.raises(ValueError):
        ReorderBuffer().offer("c_1", bad, "x")


def test_drop_held_forgets_one_chats_held_items_only():
    # Given c_1 holding 3 and 4 behind a missing 2, and c_2 holding 5
    buf: ReorderBuffer[str] = ReorderBuffer({"c_1": 1, "c_2": 3})
    for seq in (3, 4):
        buf.offer("c_1", seq, f"m{seq}")
    buf.offer("c_2", 5, "n5")
    # When c_1's held items are dropped (the user left it)
    buf.drop_held("c_1")
    # Then c_1 has no gap and keeps its cursor; c_2 still holds 5
    assert buf.held("c_1") == [] and buf.cursor("c_1") == 1
    assert buf.gaps() == [Gap("c_2", 4, 4)] and buf.held_count() == 1
    # And a late 2 for c_1 is released alone: what was dropped never comes back
    assert buf.offer("c_1", 2, "m2").released == ["m2"]
    assert buf.cursor("c_1") == 2 and not buf.held("c_1")
    # And dropping a chat with nothing held changes nothing
    buf.drop_held("c_9")
    assert buf.gaps() == [Gap("c_2", 4, 4)]


def test_start_at_moves_a_cursor_behind_the_window_and_releases_the_run_from_there():
    # Given c_1 holding 4, 5 and 7 behind a gap from cursor 0
    buf: ReorderBuffer[str] = ReorderBuffer()
    for seq in (4, 5, 7):
        assert buf.offer("c_1", seq, f"m{seq}").gap
    # When the window is said to start at 4
    released = buf.start_at("c_1", 4)
    # Then 4 and 5 are released, 7 stays held behind the gap at 6
    assert released == ["m4", "m5"] and buf.cursor("c_1") == 5 and buf.held("c_1") == [7]
    # And a start at or behind the cursor changes nothing
    assert buf.start_at("c_1", 3) == [] and buf.cursor("c_1") == 5
