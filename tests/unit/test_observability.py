"""Observability (chat_backend/observability.py): every function emits its metrics as CloudWatch
EMF on stdout at the end of the invocation, and tracing stays off where no X-Ray daemon listens."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from botocore.stub import Stubber

from chat_backend import observability

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def emf_metrics(stdout: str) -> dict[str, list[float]]:
    """Every metric value of the EMF blobs printed on stdout, by metric name (logs are skipped)."""
    values: dict[str, list[float]] = {}
    for line in stdout.splitlines():
        try:
            blob = json.loads(line)
        except ValueError:
            continue
        if not isinstance(blob, dict) or "_aws" not in blob:
            continue
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "Chat"
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                values.setdefault(metric["Name"], []).extend(value if isinstance(value, list) else [value])
    return values


def test_a_send_emits_an_emf_blob_counting_the_acked_message(
    handler_of: Callable[[str], Handler],
    make_message_event: Callable[..., dict[str, Any]],
    make_chat: Callable[..., str],
    lambda_context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given alice's chat with bob
    chat_id = make_chat("u_alice", "u_bob")
    capsys.readouterr()
    # When the send function stores alice's message
    body = {"action": "send", "clientMsgId": "cm-1", "chatId": chat_id, "ciphertext": b64(b"hi")}
    response = handler_of("send")(make_message_event(body), lambda_context)
    # Then it answered ACK, and printed an EMF blob in the "Chat" namespace with SendsAcked = 1
    assert json.loads(response["body"])["type"] == "ACK"
    assert emf_metrics(capsys.readouterr().out)["SendsAcked"] == [1.0]


def test_a_refused_frame_is_counted(
    handler_of: Callable[[str], Handler],
    make_message_event: Callable[..., dict[str, Any]],
    aws_env: Any,
    lambda_context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a send to a chat that does not exist
    event = make_message_event(
        {"action": "send", "clientMsgId": "c", "chatId": "c_none", "ciphertext": "aGk="}
    )
    capsys.readouterr()
    # When the send function refuses it
    handler_of("send")(event, lambda_context)
    # Then FramesRefused is counted, and nothing was acked
    metrics = emf_metrics(capsys.readouterr().out)
    assert metrics["FramesRefused"] == [1.0]
    assert "SendsAcked" not in metrics


def test_an_invocation_with_no_metric_neither_fails_nor_warns(
    aws_env: Any,  # the route's rate limit is kept in DynamoDB
    handler_of: Callable[[str], Handler],
    make_message_event: Callable[..., dict[str, Any]],
    lambda_context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a frame the $default route answers without counting anything
    event = make_message_event({"action": "nothing"}, route_key="$default")
    # When it is handled, with every warning made visible
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        observability.quiet_empty_metrics_warning()  # what importing observability did
        response = handler_of("default")(event, lambda_context)
    # Then the function answered, and log_metrics neither raised nor warned about the empty set
    assert json.loads(response["body"])["code"] == "BAD_REQUEST"
    assert [str(w.message) for w in caught] == []
    assert "SendsAcked" not in emf_metrics(capsys.readouterr().out)


def test_the_deliver_function_counts_what_it_pushed_and_what_it_left_for_a_retry(
    handler_of: Callable[[str], Handler],
    management_api: Any,
    lambda_context: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a batch of two envelopes: one to carol (posted), one to bob (throttled)
    frame = json.dumps({"type": "MESSAGE", "chatId": "c_1", "seq": 1})

    def record(message_id: str, user: str) -> dict[str, Any]:
        recipient = {"u": user, "d": "d_phone", "c": f"conn-{user}"}
        return {"messageId": message_id, "body": json.dumps({"frame": frame, "recipients": [recipient]})}

    event = {"Records": [record("sqs-1", "u_carol"), record("sqs-2", "u_bob")]}
    capsys.readouterr()
    with Stubber(management_api) as stub:
        stub.add_response("post_to_connection", {}, {"ConnectionId": "conn-u_carol", "Data": frame.encode()})
        stub.add_client_error("post_to_connection", "LimitExceededException", "slow down", 429)
        # When the deliver function handles it
        result = handler_of("deliver")(event, lambda_context)
    # Then both records succeed (bob's retry is queued), and the EMF blob says one was pushed and
    # one retried, none gone or dropped
    assert result == {"batchItemFailures": []}
    metrics = emf_metrics(capsys.readouterr().out)
    assert (sum(metrics["RecipientsPushed"]), sum(metrics["PushesRetried"])) == (1.0, 1.0)
    assert (sum(metrics["ConnectionsGone"]), sum(metrics["PushesDropped"])) == (0.0, 0.0)
