"""Where `make run` keeps its data (local_stack/storage.py) and the stream pollers' checkpoints: the
data directory, the checkpoint file, and where a restarted poller resumes each shard. What moto
keeps is in test_local_stack_data.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from chat_backend import wiring
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
