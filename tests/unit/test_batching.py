"""DynamoDB batch calls under throttling (dal/batching.py): unprocessed keys are read again after a
backoff and give up loudly after a bounded number of rounds; unprocessed items are written again
(boto3's batch writer) until every one is written; nothing is ever silently dropped."""

from __future__ import annotations

from typing import Any

import pytest

from chat_backend import backoff
from chat_backend.dal.batching import (
    BATCH_WRITE_MAX_ITEMS,
    UNPROCESSED_MAX_ROUNDS,
    batch_get,
    batch_get_tables,
    batch_write,
)


class ThrottlingDynamo:
    """Answers each batch call with its first key / item and leaves the rest unprocessed, for
    `throttled_rounds` calls; then does everything asked."""

    def __init__(self, throttled_rounds: int) -> None:
        self.throttled_rounds = throttled_rounds
        self.calls = 0
        self.written: list[str] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        responses: dict[str, Any] = {}
        unprocessed: dict[str, Any] = {}
        for table, request in RequestItems.items():
            keys = request["Keys"]
            if self.calls <= self.throttled_rounds:
                responses[table] = keys[:1]
                if keys[1:]:
                    unprocessed[table] = {**request, "Keys": keys[1:]}
            else:
                responses[table] = keys
        return {"Responses": responses, "UnprocessedKeys": unprocessed}

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        [(table, requests)] = RequestItems.items()
        assert len(requests) <= BATCH_WRITE_MAX_ITEMS
        done = requests[:1] if self.calls <= self.throttled_rounds else requests
        self.written += [
            f"put {r['PutRequest']['Item']['k']['S']}"
            if "PutRequest" in r
            else f"delete {r['DeleteRequest']['Key']['k']['S']}"
            for r in done
        ]
        rest = requests[len(done) :]
        return {"UnprocessedItems": {table: rest} if rest else {}}


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(backoff.time, "sleep", slept.append)
    return slept


def test_unprocessed_keys_are_read_again_until_every_key_is_answered(sleeps: list[float]) -> None:
    # Given a table that throttles the first two rounds
    ddb = ThrottlingDynamo(throttled_rounds=2)
    keys = [{"k": {"S": str(i)}} for i in range(5)]
    # When five keys are read
    items = batch_get(ddb, "t", {"Keys": keys})
    # Then all five come back, after three calls with a backoff before each retry
    assert sorted(i["k"]["S"] for i in items) == ["0", "1", "2", "3", "4"]
    assert ddb.calls == 3
    assert len(sleeps) == 2


def test_keys_still_unprocessed_after_the_last_round_raise_instead_of_going_missing(
    sleeps: list[float],
) -> None:
    # Given a table that never stops throttling
    ddb = ThrottlingDynamo(throttled_rounds=10_000)
    keys = [{"k": {"S": str(i)}} for i in range(UNPROCESSED_MAX_ROUNDS + 5)]
    # When the keys are read, Then the read fails loudly (the caller retries) after the bounded rounds
    with pytest.raises(RuntimeError, match="unprocessed"):
        batch_get(ddb, "t", {"Keys": keys})
    assert ddb.calls == UNPROCESSED_MAX_ROUNDS


def test_a_read_over_several_tables_answers_each_table_whole(sleeps: list[float]) -> None:
    # Given a throttling table pair
    ddb = ThrottlingDynamo(throttled_rounds=1)
    # When three keys of "a" and two of "b" are read in one call
    found = batch_get_tables(
        ddb,
        {
            "a": {"Keys": [{"k": {"S": f"a{i}"}} for i in range(3)]},
            "b": {"Keys": [{"k": {"S": f"b{i}"}} for i in range(2)]},
        },
    )
    # Then each table's items come back under it, every key once
    assert {t: sorted(i["k"]["S"] for i in items) for t, items in found.items()} == {
        "a": ["a0", "a1", "a2"],
        "b": ["b0", "b1"],
    }


def test_writes_go_25_per_call_and_unprocessed_items_are_written_again(sleeps: list[float]) -> None:
    # Given a table that throttles the first two calls
    ddb = ThrottlingDynamo(throttled_rounds=2)
    requests = [{"PutRequest": {"Item": {"k": {"S": f"{i:02d}"}}}} for i in range(30)]
    # When 30 items are written
    batch_write(ddb, "t", requests)
    # Then every item was written exactly once (25 per call at most)
    assert sorted(ddb.written) == [f"put {i:02d}" for i in range(30)]


def test_a_write_that_keeps_being_throttled_goes_on_while_each_call_writes_something() -> None:
    # Given a table that never stops throttling, but writes one item of every call
    ddb = ThrottlingDynamo(throttled_rounds=10_000)
    puts = [{"PutRequest": {"Item": {"k": {"S": f"p{i:02d}"}}}} for i in range(UNPROCESSED_MAX_ROUNDS + 5)]
    deletes = [{"DeleteRequest": {"Key": {"k": {"S": f"d{i:02d}"}}}} for i in range(3)]
    # When puts and deletes are written
    batch_write(ddb, "t", puts + deletes)
    # Then each was written exactly once, one call each: the write does not give up while it gets on
    # (a call that writes nothing is a throttling error, which botocore retries after a backoff)
    assert sorted(ddb.written) == sorted(
        [f"put p{i:02d}" for i in range(UNPROCESSED_MAX_ROUNDS + 5)] + [f"delete d{i:02d}" for i in range(3)]
    )
    assert ddb.calls == len(puts) + len(deletes)
