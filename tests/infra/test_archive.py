"""The message archive on AWS: the archive bucket (private, SSE, TLS only, versioned, lifecycle to
Glacier Instant Retrieval), the archiver on an EventBridge schedule, the keys-only archiveDue index,
and who may touch the bucket (the archiver writes, sync reads, nobody else)."""

from __future__ import annotations

from typing import Any

from chat_backend import wiring
from tests.infra.helpers import as_list, function_props, logical_id, of_type, references, role_statements

ARCHIVE = wiring.bucket("archive")
ARCHIVER = wiring.function("archiver")


def bucket_actions(stack: Any, resources: dict[str, Any], function: str, bucket_id: str) -> set[str]:
    return {
        action
        for statement in role_statements(stack, resources, function)
        if statement["Effect"] == "Allow" and bucket_id in set(references(statement["Resource"]))
        for action in as_list(statement["Action"])
    }


def test_archive_bucket_is_private_encrypted_and_moves_to_glacier_ir(stack, resources):
    # Given the wiring's archive bucket / When synthesized
    props = resources[logical_id(stack, stack.buckets.by_name["archive"])]["Properties"]
    # Then it is encrypted at rest, private and versioned
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    # And its objects go to Glacier Instant Retrieval after the declared days
    (lifecycle,) = [r for r in props["LifecycleConfiguration"]["Rules"] if r["Id"] == "lifecycle"]
    assert lifecycle["Transitions"] == [
        {"StorageClass": "GLACIER_IR", "TransitionInDays": ARCHIVE.glacier_ir_after_days}
    ]
    assert ARCHIVE.glacier_ir_after_days == 90


def test_archiver_runs_on_an_eventbridge_schedule(stack, resources):
    # Given the archiver's schedule trigger / When synthesized
    fn_id = logical_id(stack, stack.functions.by_name["archiver"])
    assert isinstance(ARCHIVER.trigger, wiring.ScheduleTrigger)
    # Then one rule invokes it at the declared rate, retried twice
    rules = [
        r for r in of_type(resources, "AWS::Events::Rule").values() if fn_id in set(references(r["Targets"]))
    ]
    (rule,) = rules
    minutes = ARCHIVER.trigger.rate_minutes
    assert rule["ScheduleExpression"] in (f"rate({minutes} minutes)", f"rate({minutes // 60} hour)")
    assert rule["State"] == "ENABLED"
    assert rule["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"] == 2
    # And EventBridge may invoke it (and no event source mapping does)
    permissions = [
        p
        for p in of_type(resources, "AWS::Lambda::Permission").values()
        if p["Principal"] == "events.amazonaws.com" and fn_id in set(references(p["FunctionName"]))
    ]
    assert len(permissions) == 1
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    assert not [m for m in mappings if m["FunctionName"] == {"Ref": fn_id}]
    assert function_props(stack, resources, "archiver")["Timeout"] == ARCHIVER.timeout_s


def test_archive_due_index_is_keys_only(stack, resources):
    # Given the chats table / When synthesized
    props = resources[logical_id(stack, stack.tables.by_name["chats"])]["Properties"]
    gsis = {g["IndexName"]: g for g in props["GlobalSecondaryIndexes"]}
    # Then archiveDue projects keys only (a send's META update writes nothing to it)
    assert gsis["archiveDue"]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert gsis["byMember"]["Projection"] == {"ProjectionType": "ALL"}


def test_only_the_archiver_and_its_workers_write_the_archive_and_sync_reads_it(stack, resources):
    # Given the archive bucket's logical id / When synthesized
    bucket_id = logical_id(stack, stack.buckets.by_name["archive"])
    # Then the archiver (an operator's run) and its workers may read and write its objects, sync
    # only read them
    writers = ("archiver", "archive_worker")
    for writer in writers:
        assert {"s3:GetObject", "s3:PutObject"} <= bucket_actions(stack, resources, writer, bucket_id)
    assert bucket_actions(stack, resources, "sync", bucket_id) == {"s3:GetObject"}
    # And no other function may touch it
    others = [f.name for f in wiring.FUNCTIONS if f.name not in (*writers, "sync")]
    assert all(not bucket_actions(stack, resources, name, bucket_id) for name in others)


def test_the_hourly_run_fans_out_through_the_archive_queue_to_capped_workers(stack, resources):
    # Given the archive jobs queue / When synthesized
    queue_id = logical_id(stack, stack.queues.by_name["archive_jobs"])
    worker = wiring.function("archive_worker")
    assert isinstance(worker.trigger, wiring.QueueTrigger)
    # Then the archiver may send to it and the worker both send (a listing goes on) and consume
    sends = {
        name: {
            a
            for st in role_statements(stack, resources, name)
            if queue_id in set(references(st["Resource"]))
            for a in as_list(st["Action"])
        }
        for name in ("archiver", "archive_worker")
    }
    assert "sqs:SendMessage" in sends["archiver"] and "sqs:ReceiveMessage" not in sends["archiver"]
    assert {"sqs:SendMessage", "sqs:ReceiveMessage"} <= sends["archive_worker"]
    # And the worker takes one job at a time, at most 1,000 at once
    (mapping,) = [
        m
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if queue_id in set(references(m["EventSourceArn"]))
    ]
    assert mapping["BatchSize"] == 1
    assert (
        mapping["ScalingConfig"]
        == {"MaximumConcurrency": worker.trigger.max_concurrency}
        == {"MaximumConcurrency": 1000}
    )
