"""How `make run` starts: its port check (local_stack/processes.py), and where each service's
endpoint is (local_stack/endpoints.py, stack.py): its own emulators, or LocalStack."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from local_stack.endpoints import Endpoints, localstack_host
from local_stack.processes import ensure_port_free, free_port
from local_stack.stack import LocalStack, LocalStackConfig

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
