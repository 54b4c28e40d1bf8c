"""boto3 clients, built once per process with timeouts and retries fit for Lambda."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any, cast

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    max_pool_connections=64,
)

# Presigned S3 URLs and POST policies must be SigV4 (SigV2 is refused by buckets made since 2020).
# Pushes fail fast and are not retried by botocore: a failed recipient is retried alone, later,
# through the delivery queue (logic/push.py), so it never holds up the others or the ACK.
_SERVICE_CONFIG = {
    "s3": _CONFIG.merge(Config(signature_version="s3v4")),
    "apigatewaymanagementapi": _CONFIG.merge(
        Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1, read_timeout=2)
    ),
}

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


_client_lock = threading.Lock()  # creating clients from one session is not thread-safe


@cache
def session() -> boto3.session.Session:
    """The one boto3 session of the functions (the local stack hooks its call counter here)."""
    return boto3.session.Session()


@cache
def client(service: str, endpoint_url: str | None = None) -> Any:
    # boto3 honours AWS_ENDPOINT_URL_<SERVICE>, which is how the local stack points us at itself.
    with _client_lock:
        config = _SERVICE_CONFIG.get(service, _CONFIG)
        return cast(Any, session()).client(service, endpoint_url=endpoint_url, config=config)


class TableStore:
    """A store of one DynamoDB table, on the functions' client unless given another (a test's)."""

    def __init__(self, table: str, ddb: Any | None = None) -> None:
        self.table = table
        self.ddb = ddb or client("dynamodb")


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def av(value: Any) -> dict[str, Any]:
    return cast(dict[str, Any], _serializer.serialize(value))


def cancellation_codes(exc: ClientError) -> list[str] | None:
    """Per item, why a cancelled transaction was cancelled ("None" for an item that was fine);
    None when `exc` is not a cancelled transaction."""
    if exc.response["Error"]["Code"] != "TransactionCanceledException":
        return None
    return [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]


def is_conditional_failure(exc: ClientError) -> bool:
    """A write's ConditionExpression did not hold (nothing was written)."""
    return bool(exc.response["Error"]["Code"] == "ConditionalCheckFailedException")
