"""What `make run` keeps between runs (local_stack/storage.py, moto_persistence.py, the stream
poller's checkpoints), its port check, and where each service's endpoint is (emulators or LocalStack)."""

from __future__ import annotations

import asyncio
import json
import socket
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
from local_stack.endpoints import Endpoints, localstack_host
from local_stack.moto_persistence import MotoStore
from local_stack.processes import ensure_port_free, free_port
from local_stack.stack import LocalStack, LocalStackConfig
from local_stack.storage import DEFAULT_DATA_DIR, CheckpointFile, data_dir_from_env
from local_stack.stream_poller import StreamPoller

STREAM = "arn:aws:dynamodb:ddblocal:000000000000:table/messages/stream/2026-01-01T00:00:00.000"

# --- the data directory and the checkpoint file ---------------------------------------------------


def test_the_data_dir_defaults_to_the_project_and_ephemeral_means_none(tmp_path: Path) -> None:
    assert data_dir_from_env({}) == DEFAULT_DATA_DIR
    assert DEFAULT_DATA_DIR.name == ".chat-data"
    assert data_dir_from_env({"CHAT_DATA_DIR": str(tmp_path)}) == tmp_path.resolve()
    assert data_dir_from_env({"CHAT_DATA_DIR": str(tmp_path), "CHAT_EPHEMERAL": "1"}) is None


def test_checkpoints_written_are_read_back_by_the_next_run_for_the_same_stream_only(tmp_path: Path) -> None:
    # Given a poller's checkpoint file with two shards' checkpoints written
    path = tmp_path / "checkpoints" / "fanout.json"
    CheckpointFile(path).save(STREAM, {"shard-1": "000000000000000000042", "shard-2": "7"})
    # When the next run reads it, for the same stream and for a recreated table's new stream
    same, other = CheckpointFile(path).load(STREAM), CheckpointFile(path).load(STREAM + "x")
    # Then it gets them back for the same stream, nothing for another, and no temp file is left
    assert same == {"shard-1": "000000000000000000042", "shard-2": "7"}
    assert other == {}
    assert [p.name for p in path.parent.iterdir()] == ["fanout.json"]


def test_an_unreadable_or_missing_checkpoint_file_means_no_checkpoints(tmp_path: Path) -> None:
    # Given a checkpoint file cut short (written by hand), and one that does not exist
    broken = tmp_path / "broken.json"
    broken.write_text('{"streamArn": "arn", "shar')
    # Then both read as "no checkpoints" (the poller starts from the stream's end), without raising
    assert CheckpointFile(broken).load("arn") == {}
    assert CheckpointFile(tmp_path / "none.json").load("arn") == {}


def test_a_checkpoint_is_rewritten_only_when_it_moves(tmp_path: Path) -> None:
    # Given a checkpoint written once
    checkpoints = CheckpointFile(tmp_path / "c.json")
    checkpoints.save(STREAM, {"s": "1"})
    first = (tmp_path / "c.json").stat().st_mtime_ns
    (tmp_path / "c.json").write_text("changed by someone else")
    # When the same checkpoint is saved again, Then nothing is written; when it moves, it is
    checkpoints.save(STREAM, {"s": "1"})
    assert (tmp_path / "c.json").read_text() == "changed by someone else"
    checkpoints.save(STREAM, {"s": "2"})
    assert json.loads((tmp_path / "c.json").read_text())["shards"] == {"s": "2"}
    assert first > 0


# --- the stream poller's resume positions -----------------------------------------------------------


class FakeStreams:
    """DynamoDB (DescribeTable) and DynamoDB Streams enough for the poller's start: shards, and the
    iterator positions it asks for."""

    def __init__(self, shards: list[str], trimmed: set[str] | None = None) -> None:
        self.shards = shards
        self.trimmed = trimmed or set()
        self.positions: dict[str, dict[str, str]] = {}

    def describe_table(self, TableName: str) -> dict[str, Any]:
        return {"Table": {"LatestStreamArn": STREAM}}

    def describe_stream(self, StreamArn: str) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": s} for s in self.shards]}}

    def get_shard_iterator(self, StreamArn: str, ShardId: str, **position: str) -> dict[str, Any]:
        if position.get("SequenceNumber") in self.trimmed:
            from botocore.exceptions import ClientError

            error = {"Error": {"Code": "ValidationException", "Message": "Invalid SequenceNumber"}}
            raise ClientError(error, "GetShardIterator")  # type: ignore[arg-type]
        self.positions[ShardId] = position
        return {"ShardIterator": f"it-{ShardId}"}


def stream_poller(fake: FakeStreams, checkpoints: CheckpointFile | None, latest: bool) -> StreamPoller:
    function = next(f for f in wiring.FUNCTIONS if isinstance(f.trigger, wiring.StreamTrigger))
    assert isinstance(function.trigger, wiring.StreamTrigger)
    return StreamPoller(
        None,  # type: ignore[arg-type]  (never invoked here)
        function,
        function.trigger,
        fake,
        fake,
        checkpoints=checkpoints,
        start_at_latest=latest,
    )


async def test_a_restarted_poller_resumes_after_its_checkpoints_and_skips_history_it_has_none_for(
    tmp_path: Path,
) -> None:
    # Given checkpoints for shard A (and one for B that the stream no longer holds), and a kept table
    # whose stream has shards A, B and C
    checkpoints = CheckpointFile(tmp_path / "fanout.json")
    checkpoints.save(STREAM, {"A": "000000000000000000010", "B": "000000000000000000003"})
    fake = FakeStreams(["A", "B", "C"], trimmed={"000000000000000000003"})
    poller = stream_poller(fake, CheckpointFile(tmp_path / "fanout.json"), latest=True)
    # When the poller prepares (before the stack serves) and reads each shard once
    await poller.prepare()
    for shard in poller.shards.values():
        if shard.iterator is None:
            shard.iterator = poller._iterator(shard)
    # Then A resumes right after its checkpoint, B (checkpoint trimmed) from the oldest record held,
    # and C (no checkpoint) from LATEST, not from 24 h of history
    assert fake.positions["A"] == {
        "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
        "SequenceNumber": "000000000000000000010",
    }
    assert fake.positions["B"] == {"ShardIteratorType": "TRIM_HORIZON"}
    assert fake.positions["C"] == {"ShardIteratorType": "LATEST"}
    # And a shard that appears after the start is read from its beginning, as before
    fake.shards.append("D")
    poller._discover_shards()
    poller._iterator(poller.shards["D"])
    assert fake.positions["D"] == {"ShardIteratorType": "TRIM_HORIZON"}


async def test_a_new_table_and_an_ephemeral_stack_read_from_trim_horizon(tmp_path: Path) -> None:
    # Given a table created by this run (nothing kept), with no checkpoint file
    fake = FakeStreams(["A"])
    poller = stream_poller(fake, None, latest=False)
    # When it prepares and reads
    await poller.prepare()
    poller._iterator(poller.shards["A"])
    # Then the shard is read from its beginning: nothing written since the table exists is missed
    assert fake.positions["A"] == {"ShardIteratorType": "TRIM_HORIZON"}


async def test_a_commit_writes_the_checkpoint(tmp_path: Path) -> None:
    # Given a prepared poller with a checkpoint file, holding two read records of shard A
    fake = FakeStreams(["A"])
    poller = stream_poller(fake, CheckpointFile(tmp_path / "fanout.json"), latest=False)
    await poller.prepare()
    shard = poller.shards["A"]
    shard.pending = [{"dynamodb": {"SequenceNumber": n}} for n in ("5", "6")]
    # When the first is done with
    poller._commit(shard, 1)
    # Then the file holds it as A's checkpoint, for this stream
    assert CheckpointFile(tmp_path / "fanout.json").load(STREAM) == {"A": "5"}
    await asyncio.sleep(0)


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


# --- the port check -----------------------------------------------------------------------------


def test_a_port_held_only_by_time_wait_is_free_and_a_listened_one_is_not() -> None:
    # Given a port that served a connection the server closed first (its side stays in TIME_WAIT)
    port = free_port()
    with socket.create_server(("127.0.0.1", port)) as server:
        peer = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server closes first, as the stack does at its stop
        peer.recv(1)
        peer.close()
    # Then a plain bind is refused (the situation `make run` met), but the port check passes
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    ensure_port_free(port)
    # And a port something listens on is refused
    with socket.create_server(("127.0.0.1", free_port())) as listening, pytest.raises(SystemExit):
        ensure_port_free(listening.getsockname()[1])


# --- endpoints: our emulators or LocalStack ---------------------------------------------------------


def test_without_localstack_the_stack_starts_its_emulators_in_memory_or_on_the_data_dir(
    tmp_path: Path,
) -> None:
    # Given no LOCALSTACK_HOST
    assert localstack_host({}) is None and localstack_host({"LOCALSTACK_HOST": " "}) is None
    # When the stack plans its emulators, ephemeral and with a data directory
    ephemeral = LocalStack(LocalStackConfig()).emulators()
    kept = LocalStack(LocalStackConfig(data_dir=tmp_path)).emulators()
    # Then it runs DynamoDB Local and moto: in memory, or keeping their data under the directory
    assert [c.name for c in ephemeral] == [c.name for c in kept] == ["dynamodb-local", "moto"]
    assert "-inMemory" in ephemeral[0].argv and "--data-dir" not in ephemeral[1].argv
    assert kept[0].argv[kept[0].argv.index("-dbPath") + 1] == str(tmp_path / "dynamodb")
    assert "-sharedDb" in kept[0].argv and "-inMemory" not in kept[0].argv
    assert kept[1].argv[kept[1].argv.index("--data-dir") + 1] == str(tmp_path)
    # And each service's endpoint is the emulator serving it, for the stack and the functions
    endpoints = Endpoints.emulators("http://127.0.0.1:1111", "http://127.0.0.1:2222")
    assert endpoints.function_env() == {
        "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:1111",
        "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": "http://127.0.0.1:1111",
        "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:2222",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2222",
        "AWS_ENDPOINT_URL_SNS": "http://127.0.0.1:2222",
    }
    assert endpoints.client("dynamodbstreams", "us-east-1").meta.endpoint_url == "http://127.0.0.1:1111"


def test_with_localstack_host_every_service_goes_to_localstack_and_no_emulator_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given LOCALSTACK_HOST (and no AWS_ENDPOINT_URL, which localstack-client would prefer)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("USE_SSL", raising=False)
    config = LocalStackConfig.from_env()
    monkeypatch.setenv("LOCALSTACK_HOST", "localstack.internal:4566")
    config = LocalStackConfig.from_env()
    # When the stack plans its emulators and endpoints
    stack = LocalStack(config)
    endpoints = Endpoints.localstack(config.localstack_host or "")
    # Then it starts none, and DynamoDB, Streams, SQS, S3 (and SNS) all go to LocalStack's edge port,
    # for the stack's own clients (localstack-client sessions) and the functions alike
    assert config.localstack_host == "localstack.internal:4566"
    assert stack.emulators() == []
    assert set(endpoints.function_env().values()) == {"http://localstack.internal:4566"}
    assert set(endpoints.function_env()) == {
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_SNS",
    }
    for service in ("dynamodb", "dynamodbstreams", "sqs", "s3"):
        assert endpoints.client(service, "us-east-1").meta.endpoint_url == "http://localstack.internal:4566"
    # And a bare host gets LocalStack's default edge port
    assert Endpoints.localstack("localhost").urls["sqs"] == "http://localhost:4566"


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
