"""The benchmark's write-unit arithmetic (bench/write_units.py): DynamoDB's item sizes, 2 units
per started KB of each item a transaction writes, and the inbox items a rotation's sendToDevice
frames become (each frame cut into parts of 99 messages, each part with its TXN item)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from bench.encryption_setup import to_device_frames
from bench.write_units import (
    attribute_bytes,
    inbox_transactions,
    item_bytes,
    number_bytes,
    transact_write_units,
)


@pytest.mark.parametrize(
    ("number", "size"),
    [
        ("0", 1),
        ("7", 2),
        ("12", 2),
        ("123", 3),
        ("1000", 2),
        ("-0.0012300", 3),
        ("1767225601", 6),
        ("1767225600", 5),
    ],
)
def test_a_number_costs_a_byte_per_two_significant_digits_plus_one(number: str, size: int) -> None:
    # Given a number as DynamoDB holds it (leading and trailing zeros, sign and point are free)
    # When its size is computed, Then it is 1 byte per two significant digits, plus 1
    assert number_bytes(number) == size


def test_an_item_counts_its_attribute_names_and_values() -> None:
    # Given an item with a string, a number, a binary value, a map and a list
    item: dict[str, dict[str, Any]] = {
        "device": {"S": "u1#d1"},
        "expiresAt": {"N": "12345"},
        "ciphertext": {"B": b"\x00" * 10},
        "meta": {"M": {"ok": {"BOOL": True}}},
        "tags": {"L": [{"S": "ab"}, {"NULL": True}]},
    }
    # When its size is computed
    size = item_bytes(item)
    # Then each name's bytes and each value's count: maps and lists 3 bytes, 1 per element
    assert size == (6 + 5) + (9 + 4) + (10 + 10) + (4 + 3 + 2 + 1 + 1) + (4 + 3 + 1 + 2 + 1 + 1)
    with pytest.raises(ValueError):
        attribute_bytes({"X": "?"})


def test_a_transaction_costs_two_units_per_started_kilobyte_of_each_item() -> None:
    # Given items of 1 byte, exactly 1 KB and one byte more ("b" is 1 byte of name)
    small, one_kb, over = ({"b": {"B": b"\x00" * (n - 1)}} for n in (1, 1024, 1025))
    # When a transaction writes them, Then each costs 2 units per started KB: 2, 2, 4
    assert [transact_write_units([i]) for i in (small, one_kb, over)] == [2, 2, 4]
    assert transact_write_units([small, one_kb, over]) == 8


def test_the_sdks_frames_of_99_are_one_transaction_each_with_its_txn_item() -> None:
    # Given 250 small to-device messages, framed as the SDK frames them (99 a frame)
    messages = [(f"u{i}", "d1", b"key") for i in range(250)]
    frames = to_device_frames(messages, "g_1")
    assert [len(f["messages"]) for f in frames] == [99, 99, 52]
    # When the server stores the frames
    transactions = inbox_transactions("u_sender", "d1", frames)
    # Then each frame is one transaction (the server's parts hold 99), led by its TXN item
    assert [len(t) for t in transactions] == [100, 100, 53]
    assert all(t[0]["device"]["S"] == "TXN#u_sender#d1" for t in transactions)
    stored = [i for t in transactions for i in t[1:]]
    assert [base64.b64encode(bytes(i["ciphertext"]["B"])) for i in stored] == [base64.b64encode(b"key")] * 250
    # And every item is under 1 KB: 2 units each
    assert sum(transact_write_units(t) for t in transactions) == 2 * 253
