"""Printing the encryption bench's figures (bench/encryption.py), as `make bench` shows them."""

from __future__ import annotations

import json
from typing import Any

from bench.encryption_setup import ID_MAX_CHARS
from chat_client.to_device import MESSAGES_PER_FRAME


def print_encryption_client(rows: list[dict[str, Any]]) -> None:
    """The client part's rows (ClientFigures.rows)."""
    for row in rows:
        section = row["section"]
        if section == "encryption per message":
            print(
                f"encryption | per message ({row['messages']} texts of {row['text_chars']} chars, "
                f"direct chat; sender's store {row['store_bytes']:,} bytes): p50 / p99 us"
            )
            _print_us(row["us"])
        elif section == "encryption Olm session setup":
            print(f"encryption | Olm session setup per device ({row['pairs']} fresh pairs): p50 / p99 us")
            _print_us(row["us"])
        elif section == "encryption bytes":
            print(
                f"encryption | bytes: text {row['text_bytes']} -> MESSAGE ciphertext "
                f"{row['message_ciphertext_bytes']} -> send frame {row['send_frame_bytes']} "
                f"(unencrypted: {row['send_frame_bytes_unencrypted']}); room-key to-device ciphertext "
                f"{row['room_key_ciphertext_bytes']} (limit {row['to_device_ciphertext_limit']}), "
                f"{row['room_key_in_frame_bytes']} in a sendToDevice frame"
            )
            print(
                f"    at the longest ids ({ID_MAX_CHARS} chars): a frame of {MESSAGES_PER_FRAME} room keys "
                f"{row['full_frame_bytes_at_longest_ids']:,} bytes (limit {row['frame_bytes_limit']:,}), "
                f"an inbox item {row['item_bytes_at_longest_ids']} bytes"
            )
        elif section == "encryption rotation":
            print(
                f"encryption | rotation, {row['members']} members, {row['rotation']}: "
                f"{row['to_device_messages']} to-device messages (Olm types {row['olm_message_types']}) "
                f"made in {row['client_s']} s ({row['client_ms_per_device']} ms/device) | "
                f"{row['ciphertext_bytes']:,} ciphertext bytes, {row['send_to_device_frames']} sendToDevice "
                f"frames ({row['frame_bytes_total']:,} bytes, largest {row['frame_bytes_max']:,} of "
                f"{row['frame_bytes_limit']:,}) | server: {row['transact_write_items']} TransactWriteItems, "
                f"{row['items']} items of {row['item_bytes_min_max'][0]}-{row['item_bytes_min_max'][1]} "
                f"bytes, {row['write_units']:,} WCU"
            )
        else:
            print(
                f"encryption | rotation details: vodozemac alone {row['vodozemac_alone_s']} s; "
                f"receivers' pre-key decrypt p50 / p99 {row['receivers_decrypting_us'][50]} / "
                f"{row['receivers_decrypting_us'][99]} us; sender's store {row['big_store_bytes']:,} bytes; "
                f"client part {row['client_part_s']} s"
            )
            print("    per message on that store (p50 / p99 us):")
            _print_us(row["per_message_big_store_us"])


def _print_us(summary: dict[str, dict[int, float]]) -> None:
    for name, p in summary.items():
        print(f"    {name:<62} {p[50]:>10,.1f} / {p[99]:>10,.1f}")


def print_rotation_over_stack(row: dict[str, Any]) -> None:
    print(
        f"encryption | rotation over the stack: {row['to_device_messages']} to-device messages stored in "
        f"{row['seconds']} s | TransactWriteItems {row['transact_write_items']}, "
        f"{row['write_units_transact']:,} WCU as DynamoDB Local reports them "
        f"(computed {row['write_units_computed']:,}); all writes {row['write_units_all']:,} WCU"
    )
    print("    calls:", json.dumps(row["aws_calls"]))
