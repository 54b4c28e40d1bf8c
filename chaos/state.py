"""What the stack has stored, as a set of lines: every item of every table except the rate-limit
buckets (a refused frame may spend a token; that is not state), and every object in the buckets.
Two snapshots differ exactly where something was written, changed or deleted."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3

REGION = "us-east-1"
NOT_STATE = ("limits",)  # table names containing these hold counters, not data


def snapshotter(dynamodb_url: str, s3_url: str) -> Callable[[], frozenset[str]]:
    session = boto3.session.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION
    )
    ddb = session.client("dynamodb", endpoint_url=dynamodb_url)
    s3 = session.client("s3", endpoint_url=s3_url)

    def snapshot() -> frozenset[str]:
        lines: set[str] = set()
        for table in ddb.list_tables()["TableNames"]:
            if any(n in table for n in NOT_STATE):
                continue
            for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
                lines.update(f"{table} {_canonical(item)}" for item in page["Items"])
        for bucket in s3.list_buckets()["Buckets"]:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
                lines.update(f"s3 {bucket['Name']}/{o['Key']} {o['ETag']}" for o in page.get("Contents", []))
        return frozenset(lines)

    return snapshot


def _canonical(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True, default=str)
