"""Create every table, queue and bucket of the wiring table on the local emulators."""

from __future__ import annotations

import json
from typing import Any

from chat_backend import wiring


def create_table(ddb: Any, table: wiring.Table, name: str | None = None) -> None:
    """The table exactly as the wiring declares it (keys, GSIs, stream, TTL), named `name` or
    its logical name."""
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
            {"IndexName": index.name, "KeySchema": schema, "Projection": {"ProjectionType": "ALL"}}
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
    ddb.create_table(**request)
    if table.ttl_attribute:
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )


def create_queue(sqs: Any, queue: wiring.Queue) -> tuple[str, str]:
    """The queue and its DLQ; returns (queue URL, DLQ URL)."""
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


def create_bucket(s3: Any, bucket: wiring.Bucket) -> None:
    """The bucket with the wiring's lifecycle rules, private and versioned as on AWS."""
    s3.create_bucket(Bucket=bucket.name)
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
    if bucket.intelligent_tiering_after_days is not None:
        rule["Transitions"] = [
            {"Days": bucket.intelligent_tiering_after_days, "StorageClass": "INTELLIGENT_TIERING"}
        ]
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


def bootstrap(ddb: Any, sqs: Any, s3: Any) -> dict[str, str]:
    """Create everything; returns the resource env vars every function reads."""
    env: dict[str, str] = {}
    for table in wiring.TABLES:
        create_table(ddb, table)
        env[table.env_var] = table.name
    for queue in wiring.QUEUES:
        env[queue.env_var], _ = create_queue(sqs, queue)
    for bucket in wiring.BUCKETS:
        create_bucket(s3, bucket)
        env[bucket.env_var] = bucket.name
    return env
