"""API Gateway WebSocket events as the functions receive them ($connect, $disconnect, MESSAGE), a
fake Lambda context, and the real handler files (functions/<name>/handler.py) loaded as they
deploy. Plain functions: conftest.py's `route`, `handler_of` and event fixtures wrap them."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO / "functions"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
API_ID = "abc123defg"
STAGE = "test"
CALLBACK_URL = f"https://{API_ID}.execute-api.{REGION}.amazonaws.com/{STAGE}"


def _request_context(route_key: str, event_type: str, connection_id: str) -> dict[str, Any]:
    # Shaped like powertools' sample apiGatewayWebSocketApi{Connect,Disconnect,Message}.json.
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": "BFaVtH2HoAMFZEQ=",
        "requestTime": "28/Nov/2026:03:21:07 +0000",
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": 1795836067000,
        "requestTimeEpoch": 1795836067123,
        "identity": {"sourceIp": "203.0.113.7"},
        "requestId": "BFaVtH2HoAMFZEQ=",
        "domainName": f"{API_ID}.execute-api.{REGION}.amazonaws.com",
        "connectionId": connection_id,
        "apiId": API_ID,
    }


def _authorizer(user_id: str, device_id: str) -> dict[str, str]:
    return {"principalId": user_id, "userId": user_id, "deviceId": device_id}


def message_event(
    body: Any,
    *,
    user_id: str = "u_alice",
    device_id: str = "d_phone",
    connection_id: str | None = None,
    route_key: str | None = None,
) -> dict[str, Any]:
    """A WebSocket MESSAGE event; `body` is sent as is when a str, else JSON-encoded."""
    raw = body if body is None or isinstance(body, str) else json.dumps(body)
    if route_key is None:
        route_key = body.get("action", "$default") if isinstance(body, dict) else "$default"
    context = _request_context(route_key, "MESSAGE", connection_id or f"conn-{user_id}-{device_id}")
    context["messageId"] = "BFaVtfGSIAMCKug="
    context["authorizer"] = _authorizer(user_id, device_id)
    return {"requestContext": context, "body": raw, "isBase64Encoded": False}


def connect_event(user_id: str, device_id: str, connection_id: str) -> dict[str, Any]:
    context = _request_context("$connect", "CONNECT", connection_id)
    context["authorizer"] = _authorizer(user_id, device_id)
    host = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
    return {
        "headers": {"Host": host},
        "multiValueHeaders": {"Host": [host]},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def disconnect_event(user_id: str, device_id: str, connection_id: str) -> dict[str, Any]:
    event = connect_event(user_id, device_id, connection_id)
    event["requestContext"].update(
        routeKey="$disconnect",
        eventType="DISCONNECT",
        disconnectStatusCode=1005,
        disconnectReason="Client-side close frame status not set",
    )
    return event


@dataclass
class FakeLambdaContext:
    function_name: str = "chat-unit-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:chat-unit-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@cache
def load_handler(name: str) -> ModuleType:
    """functions/<name>/handler.py, the file that deploys, under a module name unique to it."""
    module_name = f"unit_function_{name}_handler"
    spec = importlib.util.spec_from_file_location(module_name, FUNCTIONS_DIR / name / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
