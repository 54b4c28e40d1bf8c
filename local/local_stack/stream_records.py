"""DynamoDB Streams records as Lambda hands them to a function: JSON, so binary attribute values
arrive base64-encoded and the creation time as epoch seconds, with the event source's fields."""

from __future__ import annotations

import base64
from typing import Any

IMAGE_KEYS = ("Keys", "NewImage", "OldImage")


def sequence_number(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record as the function's event carries it."""
    dynamodb = {k: _json_attribute_values(v) if k in IMAGE_KEYS else v for k, v in record["dynamodb"].items()}
    created = dynamodb.get("ApproximateCreationDateTime")
    if created is not None and not isinstance(created, int | float):
        dynamodb["ApproximateCreationDateTime"] = created.timestamp()
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", "us-east-1"),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }


def _json_attribute_values(value: Any) -> Any:
    """Attribute values as Lambda's JSON event carries them: bytes (B, BS) as base64 strings."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _json_attribute_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_attribute_values(v) for v in value]
    return value
