"""Mobile push in the deployed stack: the functions that send it (the wiring's `sends_push`) are told
the platform applications the deployer gave and may make endpoints from those applications and
publish to / delete those endpoints only; the notify function is fed by its queue. Without the
context no function may touch SNS, and synth warns."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template
from chat_stack import build
from chat_stack.settings import DeploySettings

from chat_backend import wiring
from tests.infra.conftest import PUSH, PUSH_APNS_ARN, PUSH_FCM_ARN, SKIP_BUNDLING
from tests.infra.helpers import as_list, function_props, logical_id, of_type, role_statements

SENDS_PUSH = sorted(f.name for f in wiring.FUNCTIONS if f.sends_push)


def sns_statements(stack, resources: dict[str, Any], name: str) -> list[tuple[list[str], Any]]:
    return [
        (sorted(as_list(s["Action"])), s["Resource"])
        for s in role_statements(stack, resources, name)
        if any(a.startswith("sns:") for a in as_list(s["Action"]))
    ]


def test_the_push_senders_may_make_endpoints_of_the_given_applications_and_publish_to_those_only(
    stack, resources
):
    # Given the stack deployed with APNs and FCM applications / When synthesized
    assert SENDS_PUSH == ["devices", "notify"]
    for spec in wiring.FUNCTIONS:
        env = function_props(stack, resources, spec.name)["Environment"]["Variables"]
        statements = sns_statements(stack, resources, spec.name)
        if spec.name in SENDS_PUSH:
            # Then each sender is told both applications
            assert json.loads(env[wiring.PUSH_PLATFORMS_ENV]) == {"apns": PUSH_APNS_ARN, "fcm": PUSH_FCM_ARN}
            # And may make endpoints of them, publish to / delete / re-enable those, nothing else
            assert statements == [
                (["sns:CreatePlatformEndpoint"], [PUSH_APNS_ARN, PUSH_FCM_ARN]),
                (
                    ["sns:DeleteEndpoint", "sns:Publish", "sns:SetEndpointAttributes"],
                    [
                        "arn:aws:sns:eu-west-1:123456789012:endpoint/APNS/chat-test-apns/*",
                        "arn:aws:sns:eu-west-1:123456789012:endpoint/GCM/chat-test-fcm/*",
                    ],
                ),
            ]
        else:
            # And no other function knows of push or may call SNS
            assert wiring.PUSH_PLATFORMS_ENV not in env, spec.name
            assert statements == [], spec.name


def test_the_notify_function_reads_its_queue_and_the_push_table(stack, resources):
    # Given the notify function / When synthesized / Then its queue triggers it with partial failures
    notify_id = logical_id(stack, stack.functions.by_name["notify"])
    queue_id = logical_id(stack, stack.queues.by_name["notify"])
    mappings = of_type(resources, "AWS::Lambda::EventSourceMapping").values()
    [mapping] = [m for m in mappings if m["FunctionName"] == {"Ref": notify_id}]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # And the push table is keyed by `key`, with the CHAT# gates' TTL
    table = of_type(resources, "AWS::DynamoDB::Table")[logical_id(stack, stack.tables.by_name["push"])]
    assert table["KeySchema"] == [{"AttributeName": "key", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}


def test_without_push_context_no_function_may_call_sns_and_registration_is_refused():
    # Given the stack synthesized without any push application
    stack = build(App(context={**SKIP_BUNDLING, "stage": "nopush"}))
    resources = Template.from_stack(stack).to_json()["Resources"]
    # Then the senders are told an empty map (registerPush answers BAD_REQUEST), and no function
    # may call SNS
    for spec in wiring.FUNCTIONS:
        env = function_props(stack, resources, spec.name)["Environment"]["Variables"]
        if spec.sends_push:
            assert json.loads(env[wiring.PUSH_PLATFORMS_ENV]) == {}
        assert sns_statements(stack, resources, spec.name) == [], spec.name


def test_push_context_takes_sns_platform_application_arns_only():
    # Given each platform's context key / When read / Then the ARN lands under its platform
    settings = DeploySettings.from_context(App(context=PUSH).node)
    assert settings.push_platforms == {"apns": PUSH_APNS_ARN, "fcm": PUSH_FCM_ARN}
    # And a topic ARN, or an application of another platform's kind, is refused at synth
    with pytest.raises(ValueError, match="pushFcmArn"):
        topic = "arn:aws:sns:eu-west-1:123456789012:alarms"
        DeploySettings.from_context(App(context={"pushFcmArn": topic}).node)
