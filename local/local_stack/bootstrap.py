"""Create every table, queue and bucket of the wiring table on the local emulators (or LocalStack).
What a kept data directory (or a running LocalStack) already holds is kept: only what is missing
is created."""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import ClientError

from chat_backend import wiring

log = logging.getLogger("local_stack")


def create_table(ddb: Any, table: wiring.Table, name: str | None = None) -> bool:
    """The table exactly as the wiring declares it (keys, GSIs, stream, TTL), named `name` or
    its logical name. Returns False (and changes nothing) when a table of that name exists."""
    name = name or table.name
    attrs = {table.partition_key}
    keys = [{"AttributeName": table.partition_key[0], "KeyType": "HASH"}]
    if table.sort_key:
        attrs.add(table.sort_key)
        keys.append({"AttributeName": table.sort_key[0], "KeyType": "RANGE"})
    indexes = []
    for index in table.indexes:
        attrs.add(index.partition_key)
        schema = [{"AttributeName": index.partition_key[0], "KeyType": "HASH"}]
        if index.sort_key:
            attrs.add(index.sort_key)
            schema.append({"AttributeName": index.sort_key[0], "KeyType": "RANGE"})
        indexes.append(
            {"IndexName": index.name, "KeySchema": schema, "Projection": {"ProjectionType": index.projection}}
        )
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": keys,
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in sorted(attrs)],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if indexes:
        request["GlobalSecondaryIndexes"] = indexes
    if table.stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": table.stream}
    try:
        ddb.create_table(**request)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
        _check_existing(ddb, table, name, indexes)
        return False
    if table.ttl_attribute:
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )
    return True


def _check_existing(ddb: Any, table: wiring.Table, name: str, indexes: list[dict[str, Any]]) -> None:
    """A kept table made by an older wiring: say what it lacks (the functions would fail on it)."""
    described = ddb.describe_table(TableName=name)["Table"]
    have = {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])}
    missing = sorted({i["IndexName"] for i in indexes} - have)
    no_stream = bool(table.stream) and not described.get("LatestStreamArn")
    if missing or no_stream:
        log.warning(
            "table %s was kept from an earlier run but lacks %s: delete the data directory to recreate it",
            name,
            ", ".join([*missing, *(["its stream"] if no_stream else [])]),
        )


def create_queue(sqs: Any, queue: wiring.Queue) -> tuple[str, str]:
    """The queue and its DLQ; returns (queue URL, DLQ URL). SQS answers an existing queue of the
    same attributes with its URL."""
    suffix = ".fifo" if queue.fifo else ""
    fifo_attrs = {"FifoQueue": "true"} if queue.fifo else {}
    dlq_url = sqs.create_queue(QueueName=queue.dlq_name + suffix, Attributes=fifo_attrs)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=queue.name + suffix,
        Attributes={
            **fifo_attrs,
            "VisibilityTimeout": str(queue.visibility_timeout_s),
            "DelaySeconds": str(queue.delay_s),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": queue.max_receive_count}
            ),
        },
    )["QueueUrl"]
    return url, dlq_url


def lifecycle_transitions(bucket: wiring.Bucket) -> list[tuple[str, int]]:
    """The storage-class transitions the wiring gives the bucket, in order: (class, after days)."""
    return [
        (storage_class, days)
        for storage_class, days in (
            ("INTELLIGENT_TIERING", bucket.intelligent_tiering_after_days),
            ("GLACIER_IR", bucket.glacier_ir_after_days),
        )
        if days is not None
    ]


def create_bucket(s3: Any, bucket: wiring.Bucket) -> None:
    """The bucket with the wiring's lifecycle rules, private and versioned as on AWS. A bucket
    kept from an earlier run (with its objects) gets the same configuration again."""
    try:
        s3.create_bucket(Bucket=bucket.name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_public_access_block(
        Bucket=bucket.name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
    rule: dict[str, Any] = {
        "ID": "lifecycle",
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": bucket.abort_incomplete_upload_days},
    }
    transitions = [{"Days": days, "StorageClass": cls} for cls, days in lifecycle_transitions(bucket)]
    if transitions:
        rule["Transitions"] = transitions
    if bucket.expire_noncurrent_after_days is not None:
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": bucket.expire_noncurrent_after_days}
    rules = [rule]
    if bucket.expire_pending_after_days is not None:  # uploads never attached to a message
        rules.append(
            {
                "ID": "expire-unattached",
                "Status": "Enabled",
                "Filter": {"Tag": {"Key": "state", "Value": "pending"}},
                "Expiration": {"Days": bucket.expire_pending_after_days},
            }
        )
    s3.put_bucket_lifecycle_configuration(Bucket=bucket.name, LifecycleConfiguration={"Rules": rules})


def bootstrap(ddb: Any, sqs: Any, s3: Any, kept_tables: set[str] | None = None) -> dict[str, str]:
    """Create what is missing; returns the resource env vars every function reads. The names of
    tables that existed already are added to `kept_tables`."""
    env: dict[str, str] = {}
    for table in wiring.TABLES:
        if not create_table(ddb, table) and kept_tables is not None:
            kept_tables.add(table.name)
        env[table.env_var] = table.name
    for queue in wiring.QUEUES:
        env[queue.env_var], _ = create_queue(sqs, queue)
    for bucket in wiring.BUCKETS:
        create_bucket(s3, bucket)
        env[bucket.env_var] = bucket.name
    return env


# SNS's platform names for the protocol's push platforms.
SNS_PLATFORMS = {"apns": "APNS", "apns_sandbox": "APNS_SANDBOX", "fcm": "GCM"}


def create_push_platforms(sns: Any) -> dict[str, str]:
    """A platform application per push platform (moto: credentials are not checked); the
    {platform: ARN} map the functions read from CHAT_PUSH_PLATFORMS."""
    return {
        platform: sns.create_platform_application(
            Name=f"chat-{platform.replace('_', '-')}",
            Platform=SNS_PLATFORMS[platform],
            Attributes={"PlatformCredential": "local", "PlatformPrincipal": "local"},
        )["PlatformApplicationArn"]
        for platform in wiring.PUSH_PLATFORMS
    }


def restore_push_endpoints(ddb: Any, sns: Any, table: str, platforms: dict[str, str]) -> int:
    """The endpoints of the push registrations a kept data directory holds, made again in moto
    (which keeps nothing across a restart): the same application and token give the same ARN
    (local_stack/push_log.py). Returns how many."""
    restored = 0
    for page in ddb.get_paginator("scan").paginate(TableName=table, ProjectionExpression="devices"):
        for item in page["Items"]:
            for entry in item.get("devices", {}).get("M", {}).values():
                device = entry["M"]
                platform = device["platform"]["S"]
                if platform in platforms:
                    sns.create_platform_endpoint(
                        PlatformApplicationArn=platforms[platform], Token=device["token"]["S"]
                    )
                    restored += 1
    return restored
