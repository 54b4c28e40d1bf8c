"""Reading a synthesized template: logical ids, references, resources by type, role statements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chat_stack import ChatStack
from constructs import Construct

ROUTE = "AWS::ApiGatewayV2::Route"


def logical_id(stack: ChatStack, construct: Construct) -> str:
    return stack.get_logical_id(construct.node.default_child)


def wiring_resource(stack: ChatStack, name: str) -> Construct:
    return stack.tables.by_name.get(name) or stack.queues.by_name.get(name) or stack.buckets.by_name[name]


def references(value: Any) -> Iterator[str]:
    """Logical ids a template value points at through Ref or Fn::GetAtt, however deeply nested."""
    if isinstance(value, dict):
        if "Ref" in value:
            yield value["Ref"]
        if "Fn::GetAtt" in value:
            yield value["Fn::GetAtt"][0]
        for inner in value.values():
            yield from references(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from references(inner)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def of_type(resources: dict[str, Any], cfn_type: str) -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in resources.items() if r["Type"] == cfn_type}


def routes_by_key(
    resources: dict[str, Any], protocol: str = "WEBSOCKET"
) -> dict[str, tuple[str, dict[str, Any]]]:
    """The routes of the stack's WebSocket API (or of its HTTP API, `protocol="HTTP"`) by route key."""
    apis = {
        lid
        for lid, p in of_type(resources, "AWS::ApiGatewayV2::Api").items()
        if p["ProtocolType"] == protocol
    }
    return {
        props["RouteKey"]: (lid, props)
        for lid, props in of_type(resources, ROUTE).items()
        if props["ApiId"]["Ref"] in apis
    }


def stage_of(resources: dict[str, Any], protocol: str = "WEBSOCKET") -> dict[str, Any]:
    """The one stage of the stack's WebSocket API (or HTTP API)."""
    apis = {
        lid
        for lid, p in of_type(resources, "AWS::ApiGatewayV2::Api").items()
        if p["ProtocolType"] == protocol
    }
    (stage,) = (
        p for p in of_type(resources, "AWS::ApiGatewayV2::Stage").values() if p["ApiId"]["Ref"] in apis
    )
    return stage


def key_schema(partition: tuple[str, str], sort: tuple[str, str] | None) -> list[dict[str, str]]:
    keys = [{"AttributeName": partition[0], "KeyType": "HASH"}]
    return keys + ([{"AttributeName": sort[0], "KeyType": "RANGE"}] if sort else [])


def function_props(stack: ChatStack, resources: dict[str, Any], name: str) -> dict[str, Any]:
    return resources[logical_id(stack, stack.functions.by_name[name])]["Properties"]


def role_statements(stack: ChatStack, resources: dict[str, Any], name: str) -> list[dict[str, Any]]:
    role_id = function_props(stack, resources, name)["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in of_type(resources, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Roles"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def denies_insecure_transport(resources: dict[str, Any], queue_id: str) -> bool:
    return any(
        {"Ref": queue_id} in policy["Queues"]
        and statement["Effect"] == "Deny"
        and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for policy in of_type(resources, "AWS::SQS::QueuePolicy").values()
        for statement in policy["PolicyDocument"]["Statement"]
    )
