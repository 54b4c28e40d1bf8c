"""IAM, as the deployed functions meet it: each function may call only what its wiring `uses`
grants (the same grants the CDK stack makes), and anything else is refused the way AWS refuses it
(AccessDeniedException / AccessDenied). Without this the local stack would run code that fails on
its first call in AWS: a table read by a function that was never granted it.

Installed on the functions' boto3 session in each Lambda worker; the function a call belongs to
is the one the worker thread is running (`faults.current_function`). Presigning is not a call
(AWS checks a presigned URL when it is used), so presign requests pass.
"""

from __future__ import annotations

import os
from typing import Any

from botocore.exceptions import ClientError

from chat_backend import wiring
from local_stack import faults

DYNAMODB_READ = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable"}
DYNAMODB_WRITE = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
# The access levels of wiring.Access that include each kind of call.
TABLE_ACCESS = {"read": {"read", "read_write"}, "write": {"write", "read_write"}}
QUEUE_SEND = {"SendMessage", "SendMessageBatch"}
QUEUE_CONSUME = {
    "ReceiveMessage",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
}
QUEUE_ACCESS = {"send": {"send", "send_consume"}, "consume": {"consume", "send_consume"}}
CONNECTIONS_API = "apigatewaymanagementapi"
# What a function that sends_push may do (the CDK stack grants the same).
SNS_PUSH_ACTIONS = {"CreatePlatformEndpoint", "DeleteEndpoint", "Publish", "SetEndpointAttributes"}


class AccessGuard:
    def __init__(self) -> None:
        self.tables = {os.environ.get(t.env_var, t.name): t.name for t in wiring.TABLES}
        self.queues = {os.environ.get(q.env_var, q.name): q.name for q in wiring.QUEUES}
        self.buckets = {os.environ.get(b.env_var, b.name): b.name for b in wiring.BUCKETS}
        self.secrets = {os.environ.get(s.env_var, s.name): s.name for s in wiring.SECRETS}

    def install(self, events: Any) -> None:
        events.register("before-parameter-build", self._check)

    def _check(
        self, params: dict[str, Any], model: Any, context: dict[str, Any] | None = None, **_: Any
    ) -> None:
        function = faults.current_function()
        if function is None or (context or {}).get("is_presign_request"):
            return
        spec = wiring.function(function)
        service, operation = model.service_model.service_name, model.name
        for resource, action, allowed in self._needs(service, operation, params, spec):
            if not allowed:
                raise _denied(service, operation, function, resource, action)

    def _needs(
        self, service: str, operation: str, params: dict[str, Any], spec: wiring.Function
    ) -> list[tuple[str, str, bool]]:
        """(resource, IAM action, allowed by the function's grants) for each resource the call touches."""
        uses = spec.uses
        if service == "dynamodb":
            return [
                (table, f"dynamodb:{action}", uses.get(self.tables.get(table, table)) in TABLE_ACCESS[kind])
                for table, action, kind in _table_calls(operation, params)
            ]
        if service == "sqs":
            queue = self.queues.get(str(params.get("QueueUrl")), str(params.get("QueueUrl")))
            kind = "send" if operation in QUEUE_SEND else "consume" if operation in QUEUE_CONSUME else None
            if kind is None:
                return []
            return [(queue, f"sqs:{operation}", uses.get(queue) in QUEUE_ACCESS[kind])]
        if service == "s3" and "Bucket" in params:
            bucket = self.buckets.get(params["Bucket"], params["Bucket"])
            access = uses.get(bucket)
            granted = wiring.BUCKET_ACTIONS.get(access, ()) if access else ()
            return [(bucket, f"s3:{operation}", f"s3:{operation}" in granted)]
        if service == "secretsmanager" and "SecretId" in params:
            secret = self.secrets.get(params["SecretId"], params["SecretId"])
            access = uses.get(secret)
            granted = wiring.SECRET_ACTIONS.get(access, ()) if access else ()
            return [(secret, f"secretsmanager:{operation}", f"secretsmanager:{operation}" in granted)]
        if service == CONNECTIONS_API:
            return [("@connections", "execute-api:ManageConnections", spec.posts_to_connections)]
        if service == "sns":
            target = str(
                params.get("PlatformApplicationArn") or params.get("TargetArn") or params.get("EndpointArn")
            )
            return [(target, f"sns:{operation}", spec.sends_push and operation in SNS_PUSH_ACTIONS)]
        return []


def _table_calls(operation: str, params: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(table, action, read or write) of a DynamoDB call, per table it names."""
    if operation == "TransactWriteItems":
        calls = []
        for item in params.get("TransactItems", []):
            for kind, body in item.items():
                action = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}.get(kind)
                calls.append(
                    (body["TableName"], action or "ConditionCheckItem", "write" if action else "read")
                )
        return calls
    if operation == "TransactGetItems":
        return [(item["Get"]["TableName"], "GetItem", "read") for item in params.get("TransactItems", [])]
    kind = "read" if operation in DYNAMODB_READ else "write" if operation in DYNAMODB_WRITE else None
    if kind is None:
        return []
    tables = list(params["RequestItems"]) if "RequestItems" in params else [params.get("TableName", "")]
    return [(table, operation, kind) for table in tables]


def _denied(service: str, operation: str, function: str, resource: str, action: str) -> ClientError:
    code = "AccessDenied" if service == "s3" else "AccessDeniedException"
    message = (
        f"User: arn:aws:sts::000000000000:assumed-role/{function}-role/{function} is not authorized to "
        f"perform: {action} on resource: {resource} because no identity-based policy allows the "
        f"{action} action"
    )
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)
