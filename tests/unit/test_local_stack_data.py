"""What `make run` keeps in moto between runs (local_stack/moto_persistence.py, the push endpoints
bootstrap restores): S3 objects and SQS messages written through to the data directory and loaded
by the next moto, and push registrations finding their endpoints again. The data directory and the
stream pollers' checkpoints are in test_local_stack_checkpoints.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3
from moto import mock_aws
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3.models import s3_backends
from moto.sns import models as sns_models
from moto.sqs.models import sqs_backends
from werkzeug.serving import make_server

from chat_backend import wiring
from local_stack import moto_persistence, push_log
from local_stack.bootstrap import create_push_platforms, create_table, restore_push_endpoints
from local_stack.moto_persistence import MotoStore

# --- S3 and SQS written through by the moto server -----------------------------------------------


@pytest.fixture
def moto_on_disk(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """S3 and SQS clients of a moto server (in this process, on a free port) writing through to
    tmp_path."""
    store = MotoStore(tmp_path)
    store.install()
    app = store.wsgi(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield aws_client("s3", url), aws_client("sqs", url)
    finally:
        server.shutdown()
        moto_persistence.uninstall()
        s3_backends.reset()
        sqs_backends.reset()


def aws_client(service: str, url: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def restart_moto(store_dir: Path) -> MotoStore:
    """What a new moto process sees: empty backends, then the data directory loaded."""
    s3_backends.reset()
    sqs_backends.reset()
    store = MotoStore(store_dir)
    store.install()
    store.load_s3()
    return store


def test_objects_tags_and_metadata_survive_a_moto_restart(
    moto_on_disk: tuple[Any, Any], tmp_path: Path
) -> None:
    s3, _ = moto_on_disk
    # Given a bucket with an object put with metadata and tags, a multipart upload, a copy, an
    # object re-tagged, and an object deleted
    s3.create_bucket(Bucket="media")
    s3.put_object(
        Bucket="media",
        Key="c_1/md_a",
        Body=b"\x00blob a\n",
        ContentType="image/png",
        Metadata={"owner": "alice"},
        Tagging="state=pending",
    )
    upload = s3.create_multipart_upload(Bucket="media", Key="c_1/md_big")
    parts = []
    for number, chunk in enumerate((b"x" * (5 * 1024 * 1024), b"tail"), 1):
        etag = s3.upload_part(
            Bucket="media", Key="c_1/md_big", UploadId=upload["UploadId"], PartNumber=number, Body=chunk
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(
        Bucket="media", Key="c_1/md_big", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    s3.copy_object(Bucket="media", Key="c_2/md_copy", CopySource={"Bucket": "media", "Key": "c_1/md_a"})
    s3.put_object_tagging(
        Bucket="media", Key="c_1/md_a", Tagging={"TagSet": [{"Key": "state", "Value": "attached"}]}
    )
    s3.put_object(Bucket="media", Key="c_1/md_gone", Body=b"soon gone")
    s3.delete_object(Bucket="media", Key="c_1/md_gone")
    # When moto starts again on the same directory
    restart_moto(tmp_path)
    # Then every object that remained is back with its body, content type, metadata and tags
    got = s3.get_object(Bucket="media", Key="c_1/md_a")
    assert got["Body"].read() == b"\x00blob a\n"
    assert (got["ContentType"], got["Metadata"]) == ("image/png", {"owner": "alice"})
    assert s3.get_object_tagging(Bucket="media", Key="c_1/md_a")["TagSet"] == [
        {"Key": "state", "Value": "attached"}
    ]
    big = s3.get_object(Bucket="media", Key="c_1/md_big")["Body"].read()
    assert big == b"x" * (5 * 1024 * 1024) + b"tail"
    copy = s3.get_object(Bucket="media", Key="c_2/md_copy")
    assert (copy["Body"].read(), copy["Metadata"]) == (b"\x00blob a\n", {"owner": "alice"})
    assert s3.get_object_tagging(Bucket="media", Key="c_2/md_copy")["TagSet"] == [
        {"Key": "state", "Value": "pending"}
    ]
    # And the deleted one stays deleted
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="media")["Contents"]}
    assert keys == {"c_1/md_a", "c_1/md_big", "c_2/md_copy"}


def test_a_presigned_post_upload_is_written_through(moto_on_disk: tuple[Any, Any], tmp_path: Path) -> None:
    s3, _ = moto_on_disk
    # Given an object uploaded the way the clients upload media: a presigned POST form
    s3.create_bucket(Bucket="media")
    form = s3.generate_presigned_post("media", "c_1/md_post", Fields={"Content-Type": "image/jpeg"})
    response = urllib3.PoolManager().request(
        "POST", form["url"], fields={**form["fields"], "file": ("blob", b"posted bytes")}
    )
    assert response.status in (200, 201, 204)
    # When moto starts again, Then the object is there
    restart_moto(tmp_path)
    assert s3.get_object(Bucket="media", Key="c_1/md_post")["Body"].read() == b"posted bytes"


def test_a_broken_object_file_is_skipped_and_the_rest_load(
    moto_on_disk: tuple[Any, Any], tmp_path: Path
) -> None:
    s3, _ = moto_on_disk
    # Given two objects on disk, one of them cut short (written by hand)
    s3.create_bucket(Bucket="media")
    s3.put_object(Bucket="media", Key="good", Body=b"good")
    s3.put_object(Bucket="media", Key="bad", Body=b"bad bytes")
    bad = next(p for p in (tmp_path / "s3" / "media").iterdir() if p.read_bytes().endswith(b"bad bytes"))
    bad.write_bytes(bad.read_bytes()[:-3])
    # When moto starts again, Then the good one is back and the broken one is left out
    assert restart_moto(tmp_path).load_s3() == 1
    assert {o["Key"] for o in s3.list_objects_v2(Bucket="media")["Contents"]} == {"good"}


def test_queued_messages_survive_a_moto_restart_in_order_and_deleted_ones_stay_deleted(
    moto_on_disk: tuple[Any, Any], tmp_path: Path
) -> None:
    _, sqs = moto_on_disk
    # Given a FIFO queue with four messages of one group, the first received and deleted, the
    # second received and not deleted (in flight at the stop), and a standard queue with a delayed job
    fifo = sqs.create_queue(QueueName="jobs.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    for n in range(4):
        sqs.send_message(
            QueueUrl=fifo,
            MessageBody=f"job {n}",
            MessageGroupId="chat",
            MessageDeduplicationId=f"d{n}",
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "member"}},
        )
    first = sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=1)["Messages"][0]
    sqs.delete_message(QueueUrl=fifo, ReceiptHandle=first["ReceiptHandle"])
    assert sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=1)["Messages"][0]["Body"] == "job 1"
    plain = sqs.create_queue(QueueName="settle")["QueueUrl"]
    sqs.send_message(QueueUrl=plain, MessageBody="later", DelaySeconds=600)
    # When moto starts again and the stack's bootstrap creates the queues again
    restart_moto(tmp_path)
    fifo = sqs.create_queue(QueueName="jobs.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    plain = sqs.create_queue(QueueName="settle")["QueueUrl"]
    # Then the FIFO queue gives the remaining three in their order, the in-flight one first again,
    # with their attributes; the deleted one is gone
    got = []
    for _ in range(3):
        message = sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=1, MessageAttributeNames=["All"])[
            "Messages"
        ][0]
        assert message["MessageAttributes"]["kind"]["StringValue"] == "member"
        got.append(message["Body"])
        sqs.delete_message(QueueUrl=fifo, ReceiptHandle=message["ReceiptHandle"])
    assert got == ["job 1", "job 2", "job 3"]
    assert "Messages" not in sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=1)
    # And the delayed job is kept, still delayed
    attributes = sqs.get_queue_attributes(QueueUrl=plain, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    # And deleting them removed their files: a further restart brings back only the delayed job
    restart_moto(tmp_path)
    sqs.create_queue(QueueName="jobs.fifo", Attributes={"FifoQueue": "true"})
    plain = sqs.create_queue(QueueName="settle")["QueueUrl"]
    files = sorted(p.name.split("-")[-1] for p in (tmp_path / "sqs").rglob("*.json"))
    assert len(files) == 1


def test_a_message_redriven_to_the_dlq_is_kept_there(moto_on_disk: tuple[Any, Any], tmp_path: Path) -> None:
    _, sqs = moto_on_disk
    # Given a queue that redrives to its DLQ after one receive, and a message received once
    dlq = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    work = sqs.create_queue(QueueName="work", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    sqs.send_message(QueueUrl=work, MessageBody="poison")
    sqs.receive_message(QueueUrl=work, VisibilityTimeout=0)
    # When it is received again (SQS moves it to the DLQ) and moto restarts
    assert "Messages" not in sqs.receive_message(QueueUrl=work)
    restart_moto(tmp_path)
    dlq = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
    work = sqs.create_queue(QueueName="work", Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    # Then it is on the DLQ only
    assert sqs.receive_message(QueueUrl=dlq)["Messages"][0]["Body"] == "poison"
    assert "Messages" not in sqs.receive_message(QueueUrl=work)


# --- push endpoints across a restart --------------------------------------------------------------


def test_kept_push_registrations_find_their_endpoints_again_after_a_restart(monkeypatch: Any) -> None:
    # Given the local stack's moto, whose endpoint ARNs follow from application and token
    # (the patch is undone after the test: monkeypatch restores the __init__ recorded here)
    monkeypatch.setattr(sns_models.PlatformEndpoint, "__init__", sns_models.PlatformEndpoint.__init__)
    push_log._stable_endpoint_arns()
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        platforms = create_push_platforms(sns)
        arn = sns.create_platform_endpoint(PlatformApplicationArn=platforms["fcm"], Token="tok-1")[
            "EndpointArn"
        ]
        # And a kept push table naming that endpoint
        create_table(ddb, wiring.table("push"))
        device = {"platform": {"S": "fcm"}, "token": {"S": "tok-1"}, "endpointArn": {"S": arn}}
        ddb.put_item(TableName="push", Item={"key": {"S": "bob"}, "devices": {"M": {"d1": {"M": device}}}})
    # When moto starts afresh (a restart) and the stack restores the kept registrations
    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(ddb, wiring.table("push"))
        ddb.put_item(TableName="push", Item={"key": {"S": "bob"}, "devices": {"M": {"d1": {"M": device}}}})
        platforms = create_push_platforms(sns)
        assert restore_push_endpoints(ddb, sns, "push", platforms) == 1
        # Then bob's endpoint exists again under the ARN the table holds, and takes a publish
        assert sns.get_endpoint_attributes(EndpointArn=arn)["Attributes"]["Token"] == "tok-1"
        sns.publish(TargetArn=arn, Message="{}")
