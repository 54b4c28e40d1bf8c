"""BatchGetItem under throttling: unprocessed keys are asked for again, never silently dropped."""

from __future__ import annotations

from typing import Any

import pytest

from chat_backend.dal import chat_store
from chat_backend.dal.chat_store import UNPROCESSED_MAX_ROUNDS, batch_get


class ThrottlingDynamo:
    """Answers each BatchGetItem with one item and leaves the rest unprocessed, `throttled_rounds` times."""

    def __init__(self, throttled_rounds: int) -> None:
        self.throttled_rounds = throttled_rounds
        self.calls = 0

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        keys = RequestItems["t"]["Keys"]
        if self.calls <= self.throttled_rounds:
            return {
                "Responses": {"t": keys[:1]},
                "UnprocessedKeys": {"t": {**RequestItems["t"], "Keys": keys[1:]}},
            }
        return {"Responses": {"t": keys}, "UnprocessedKeys": {}}


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_store.time, "sleep", lambda _s: None)


def test_unprocessed_keys_are_read_again_until_every_key_is_answered() -> None:
    # Given a table that throttles the first two rounds
    ddb = ThrottlingDynamo(throttled_rounds=2)
    keys = [{"k": {"S": str(i)}} for i in range(5)]
    # When five keys are read
    items = batch_get(ddb, "t", {"Keys": keys})
    # Then all five come back, after three calls
    assert sorted(i["k"]["S"] for i in items) == ["0", "1", "2", "3", "4"]
    assert ddb.calls == 3


def test_keys_still_unprocessed_after_the_last_round_raise_instead_of_going_missing() -> None:
    # Given a table that never stops throttling
    ddb = ThrottlingDynamo(throttled_rounds=10_000)
    keys = [{"k": {"S": str(i)}} for i in range(UNPROCESSED_MAX_ROUNDS + 5)]
    # When the keys are read, Then the read fails loudly (the caller retries) after the bounded rounds
    with pytest.raises(RuntimeError, match="unprocessed"):
        batch_get(ddb, "t", {"Keys": keys})
    assert ddb.calls == UNPROCESSED_MAX_ROUNDS
