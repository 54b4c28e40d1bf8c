"""The synthesized template matches the wiring table.

Every expectation below is read from `chat_backend.wiring`, never listed by hand, so a route,
table, queue or trigger added to the wiring is checked here without touching this file.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from chat_stack.layer import layer_requirements

from chat_backend import wiring
from tests.infra.conftest import MEDIA_CDN_KEY_SECRET_ARN, REPO_ROOT, STAGE
from tests.infra.helpers import (
    ROUTE,
    as_list,
    denies_insecure_transport,
    function_props,
    key_schema,
    logical_id,
    of_type,
    references,
    role_statements,
    routes_by_key,
    stage_of,
    wiring_resource,
)

ROUTE_RESPONSE = "AWS::ApiGatewayV2::RouteResponse"
EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"
TRIGGERED = [
    fn for fn in wiring.FUNCTIONS if isinstance(fn.trigger, wiring.StreamTrigger | wiring.QueueTrigger)
]
TABLE_ACCESS = {  # access -> (actions the role must have, actions it must not have)
    "read": ({"dynamodb:GetItem", "dynamodb:Query"}, {"dynamodb:PutItem"}),
    "write": ({"dynamodb:PutItem", "dynamodb:UpdateItem"}, {"dynamodb:GetItem"}),
    "read_write": ({"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"}, set()),
}
# Object actions only: a presigned GET needs GetObject, a presigned POST PutObject and (it tags the
# upload `state=pending`) PutObjectTagging, as does attaching a blob (re-tagged `state=attached`).
BUCKET_ACCESS = {
    "read": ({"s3:GetObject"}, {"s3:PutObject", "s3:DeleteObject"}),
    "write": ({"s3:PutObject", "s3:PutObjectTagging"}, {"s3:GetObject", "s3:DeleteObject"}),
    "read_write": ({"s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"}, {"s3:DeleteObject"}),
}
SECRET_ACCESS = {"read": ({"secretsmanager:GetSecretValue"}, {"secretsmanager:PutSecretValue"})}
# The secrets the test stack is given (as context: their ARNs are literal in the template).
SECRET_ARNS = {"media_cdn_key": MEDIA_CDN_KEY_SECRET_ARN}
QUEUE_ACCESS = {
    "send": ({"sqs:SendMessage"}, {"sqs:ReceiveMessage"}),
    "consume": ({"sqs:ReceiveMessage", "sqs:DeleteMessage"}, set()),
    "send_consume": ({"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"}, set()),
}


def set_refs(value: Any) -> list[Any]:
    """Every dict nested in a policy Resource (so an Fn::GetAtt inside an Fn::Join is found)."""
    found: list[Any] = []
    if isinstance(value, dict):
        found.append(value)
        for inner in value.values():
            found.extend(set_refs(inner))
    elif isinstance(value, list):
        for inner in value:
            found.extend(set_refs(inner))
    return found


# --- WebSocket API ------------------------------------------------------------------------------


def test_every_wiring_route_is_a_route_to_the_function_that_serves_it(stack, resources):
    # Given the route keys of the wiring table
    expected = wiring.routes()
    # When the stack is synthesized
    routes = routes_by_key(resources)
    # Then each key is exactly one route, and its integration invokes the function that serves it
    assert set(routes) == set(expected)
    for key, spec in expected.items():
        integration_id = next(references(routes[key][1]["Target"]))
        uri = resources[integration_id]["Properties"]["IntegrationUri"]
        assert logical_id(stack, stack.functions.by_name[spec.name]) in set(references(uri)), key


def test_the_api_is_a_websocket_api_selecting_routes_by_the_frames_action(resources):
    # Given the synthesized template
    # When its APIs are listed
    apis = list(of_type(resources, "AWS::ApiGatewayV2::Api").values())
    # Then there is one WebSocket API (and the HTTP fallback's HTTP API, tests/infra/test_http_api.py),
    # routing on the JSON body's "action" (PROTOCOL.md), with $default
    assert sorted(p["ProtocolType"] for p in apis) == ["HTTP", "WEBSOCKET"]
    (props,) = (p for p in apis if p["ProtocolType"] == "WEBSOCKET")
    assert (props["ProtocolType"], props["RouteSelectionExpression"]) == ("WEBSOCKET", "$request.body.action")
    assert "$default" in routes_by_key(resources)


def test_connect_route_is_guarded_by_the_token_authorizer(stack, resources):
    # Given the authorizer function of the wiring table
    authorizer_fn = stack.functions.by_name[wiring.authorizer_function().name]
    # When the stack is synthesized
    routes = routes_by_key(resources)
    connect = routes["$connect"][1]
    # Then $connect uses a REQUEST authorizer reading the query-string token, backed by that function
    assert connect["AuthorizationType"] == "CUSTOM"
    authorizer = resources[connect["AuthorizerId"]["Ref"]]["Properties"]
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["IdentitySource"] == ["route.request.querystring.token"]
    assert logical_id(stack, authorizer_fn) in set(references(authorizer["AuthorizerUri"]))
    # And no other route asks for authorization (API Gateway authorizes a connection once, at $connect)
    assert all(
        props.get("AuthorizationType", "NONE") == "NONE"
        for k, (_, props) in routes.items()
        if k != "$connect"
    )


def test_two_way_routes_and_only_those_have_a_route_response(resources):
    # Given the wiring's two-way flag of the function behind each route
    expected = {key: spec.two_way for key, spec in wiring.routes().items()}
    # When the stack is synthesized
    routes = routes_by_key(resources)
    answered = {props["RouteId"]["Ref"] for props in of_type(resources, ROUTE_RESPONSE).values()}
    # Then a route has a response exactly when its function's return value goes back to the caller
    assert {key: routes[key][0] in answered for key in expected} == expected


def test_stage_is_named_after_the_stage_context_and_throttled(resources, template):
    # Given the stage context the app was built with
    # When the stack is synthesized
    stage = stage_of(resources)
    # Then the stage carries its name, deploys itself and has default route throttling
    assert stage["StageName"] == STAGE
    assert stage["AutoDeploy"] is True
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(stage["DefaultRouteSettings"])
    # And the URLs and the user pool a client needs are outputs
    assert {"WebSocketUrl", "CallbackUrl", "UserPoolId"} <= set(template.to_json()["Outputs"])


# --- Tables and queues --------------------------------------------------------------------------


def test_the_template_has_exactly_the_wiring_tables(resources):
    # Given the wiring's tables / When synthesized / Then no table more, no table less
    assert len(of_type(resources, "AWS::DynamoDB::Table")) == len(wiring.TABLES)


@pytest.mark.parametrize("spec", wiring.TABLES, ids=lambda t: t.name)
def test_table_matches_its_wiring(stack, resources, spec):
    # Given a table of the wiring table
    # When the stack is synthesized
    resource = resources[logical_id(stack, stack.tables.by_name[spec.name])]
    props = resource["Properties"]
    # Then it has the declared keys, indexes, TTL and stream
    assert props["KeySchema"] == key_schema(spec.partition_key, spec.sort_key)
    gsis = {g["IndexName"]: g["KeySchema"] for g in props.get("GlobalSecondaryIndexes", [])}
    assert gsis == {i.name: key_schema(i.partition_key, i.sort_key) for i in spec.indexes}
    declared = [spec.partition_key, spec.sort_key] + [
        k for i in spec.indexes for k in (i.partition_key, i.sort_key)
    ]
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == dict(
        k for k in declared if k
    )
    ttl = {"AttributeName": spec.ttl_attribute, "Enabled": True} if spec.ttl_attribute else None
    assert props.get("TimeToLiveSpecification") == ttl
    assert props.get("StreamSpecification") == ({"StreamViewType": spec.stream} if spec.stream else None)
    # And it is on-demand, recoverable to a point in time and kept when the stack goes
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("spec", wiring.QUEUES, ids=lambda q: q.name)
def test_queue_is_as_declared_tls_only_and_redriven_to_a_dlq(stack, resources, spec):
    # Given a queue of the wiring table and the functions it triggers
    consumer_timeouts = [
        fn.timeout_s
        for fn in TRIGGERED
        if isinstance(fn.trigger, wiring.QueueTrigger) and fn.trigger.queue == spec.name
    ]
    # When the stack is synthesized
    queue_id = logical_id(stack, stack.queues.by_name[spec.name])
    props = resources[queue_id]["Properties"]
    # Then it is FIFO (with our own deduplication ids) or standard as declared, and redriven after
    # max_receive_count receives
    assert props.get("FifoQueue", False) is spec.fifo
    if spec.fifo:
        assert props["ContentBasedDeduplication"] is False
    assert props["RedrivePolicy"]["maxReceiveCount"] == spec.max_receive_count
    dlq_id = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert resources[dlq_id]["Properties"].get("FifoQueue", False) is spec.fifo
    # And its visibility timeout covers the wiring's and 6x each consumer's timeout (AWS advice)
    assert props["VisibilityTimeout"] >= max([spec.visibility_timeout_s, *(6 * t for t in consumer_timeouts)])
    # And both it and its DLQ refuse requests without TLS
    assert denies_insecure_transport(resources, queue_id)
    assert denies_insecure_transport(resources, dlq_id)


# --- Triggers -----------------------------------------------------------------------------------


def test_the_template_has_exactly_one_event_source_mapping_per_trigger(resources):
    # Given the wiring's triggers / When synthesized / Then one mapping each, none more
    assert len(of_type(resources, EVENT_SOURCE_MAPPING)) == len(TRIGGERED)


@pytest.mark.parametrize("spec", TRIGGERED, ids=lambda f: f.name)
def test_trigger_is_an_event_source_mapping_reporting_item_failures(stack, resources, spec):
    # Given a triggered function of the wiring table
    trigger = spec.trigger
    fn_ref = {"Ref": logical_id(stack, stack.functions.by_name[spec.name])}
    # When the stack is synthesized
    (mapping,) = [m for m in of_type(resources, EVENT_SOURCE_MAPPING).values() if m["FunctionName"] == fn_ref]
    # Then it reports partial batch failures, in batches of the declared size
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == trigger.batch_size
    if isinstance(trigger, wiring.StreamTrigger):
        # And a stream trigger reads the table's stream from the start, bisects and retries as
        # declared, then keeps what still fails in an SQS queue
        table_id = logical_id(stack, stack.tables.by_name[trigger.table])
        assert mapping["EventSourceArn"] == {"Fn::GetAtt": [table_id, "StreamArn"]}
        assert mapping["StartingPosition"] == "TRIM_HORIZON"
        assert mapping["BisectBatchOnFunctionError"] is trigger.bisect_on_error
        assert mapping["MaximumRetryAttempts"] == trigger.max_retries
        (destination,) = references(mapping["DestinationConfig"]["OnFailure"]["Destination"])
        assert resources[destination]["Type"] == "AWS::SQS::Queue"
        # And only the records its filter matches invoke it (the same pattern the local stack applies)
        filters = [json.loads(f["Pattern"]) for f in mapping.get("FilterCriteria", {}).get("Filters", [])]
        assert filters == ([trigger.filter_pattern] if trigger.filter_pattern else [])
    else:
        # And a queue trigger consumes its queue
        queue_id = logical_id(stack, stack.queues.by_name[trigger.queue])
        assert mapping["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}


# --- Functions ----------------------------------------------------------------------------------


def test_every_lambda_is_a_wiring_function_on_python_3_13_arm64(template):
    # Given the wiring's functions / When synthesized
    # Then there is one Lambda per function and nothing else (no CDK helper Lambdas) ...
    template.resource_count_is("AWS::Lambda::Function", len(wiring.FUNCTIONS))
    # ... and every one runs Python 3.13 on arm64
    template.all_resources_properties(
        "AWS::Lambda::Function", {"Runtime": "python3.13", "Architectures": ["arm64"]}
    )


@pytest.mark.parametrize("spec", wiring.FUNCTIONS, ids=lambda f: f.name)
def test_function_runs_its_folder_with_the_shared_layer(stack, resources, spec):
    # Given a function of the wiring table
    # When the stack is synthesized
    props = function_props(stack, resources, spec.name)
    # Then it runs handler.handler with the declared timeout and memory, on the shared layer
    assert props["Handler"] == "handler.handler"
    assert props["Timeout"] == spec.timeout_s
    assert props["MemorySize"] == spec.memory_mb
    assert props["Layers"] == [{"Ref": logical_id(stack, stack.layer.layer)}]


@pytest.mark.parametrize("spec", wiring.FUNCTIONS, ids=lambda f: f.name)
def test_function_environment_names_exactly_the_resources_it_uses(stack, resources, spec):
    # Given a function of the wiring table and every resource env var the wiring knows
    all_resource_vars = {
        wiring.resource_env_var(r.name)
        for r in (*wiring.TABLES, *wiring.QUEUES, *wiring.BUCKETS, *wiring.SECRETS)
    }
    # When the stack is synthesized
    env = function_props(stack, resources, spec.name)["Environment"]["Variables"]
    # Then each resource it uses is named under its env var (a table's or bucket's name, a queue's
    # URL, a secret's ARN)
    assert {var for var in env if var in all_resource_vars} == {wiring.resource_env_var(r) for r in spec.uses}
    for resource in spec.uses:
        if resource in SECRET_ARNS:
            assert env[wiring.resource_env_var(resource)] == SECRET_ARNS[resource]
            continue
        assert env[wiring.resource_env_var(resource)] == {
            "Ref": logical_id(stack, wiring_resource(stack, resource))
        }
    # And only functions that post to connections get the callback URL, pointing at this API's stage
    assert (wiring.CALLBACK_URL_ENV in env) is spec.posts_to_connections
    if spec.posts_to_connections:
        callback = env[wiring.CALLBACK_URL_ENV]
        assert logical_id(stack, stack.api.api) in set(references(callback))
        assert callback["Fn::Join"][1][-1] == f"/{STAGE}"
    # And only the authorizer gets the user pool's JWKS and issuer; nobody gets a shared secret
    pool_id = logical_id(stack, stack.users.pool)
    for var in (wiring.JWKS_URL_ENV, wiring.JWT_ISSUER_ENV):
        assert (var in env) is spec.authorizer
        if spec.authorizer:
            assert pool_id in set(references(env[var]))
    assert wiring.JWT_SECRET_ENV not in env
    assert env["POWERTOOLS_SERVICE_NAME"]


@pytest.mark.parametrize("spec", wiring.FUNCTIONS, ids=lambda f: f.name)
def test_function_role_grants_what_it_uses_and_no_more(stack, resources, spec):
    # Given a function of the wiring table
    # When the stack is synthesized
    statements = role_statements(stack, resources, spec.name)
    # Then its own role allows each declared access to each resource it uses, and not the opposite
    for resource, access in spec.uses.items():
        if resource in SECRET_ARNS:
            granted = {
                action
                for s in statements
                if s["Effect"] == "Allow" and SECRET_ARNS[resource] in as_list(s["Resource"])
                for action in as_list(s["Action"])
            }
            assert granted == SECRET_ACCESS[access][0], (resource, access)
            continue
        arn: dict[str, Any] = {"Fn::GetAtt": [logical_id(stack, wiring_resource(stack, resource)), "Arn"]}
        if resource in stack.buckets.by_name:
            arn = {"Fn::Join": ["", [arn, "/*"]]}  # its objects, not the bucket itself
        allowed = {
            action
            for s in statements
            if s["Effect"] == "Allow" and arn in as_list(s["Resource"])
            for action in as_list(s["Action"])
        }
        kind = (
            TABLE_ACCESS
            if resource in stack.tables.by_name
            else BUCKET_ACCESS
            if resource in stack.buckets.by_name
            else QUEUE_ACCESS
        )
        required, forbidden = kind[access]
        assert required <= allowed, (resource, access)
        assert not forbidden & allowed, (resource, access)
    # And no function may touch a bucket it does not use, nor any bucket-level action (list, policy)
    for name, bucket in stack.buckets.by_name.items():
        bucket_arn = {"Fn::GetAtt": [logical_id(stack, bucket), "Arn"]}
        s3_actions = {
            action
            for s in statements
            if s["Effect"] == "Allow" and any(bucket_arn in set_refs(r) for r in as_list(s["Resource"]))
            for action in as_list(s["Action"])
        }
        expected = BUCKET_ACCESS[spec.uses[name]][0] if name in spec.uses else set()
        assert s3_actions == expected, (name, s3_actions)
        assert not any(bucket_arn in as_list(s["Resource"]) for s in statements), "bucket-level grant"
    # And no function reads a secret it does not use
    reads_secrets = any(a.startswith("secretsmanager:") for s in statements for a in as_list(s["Action"]))
    assert reads_secrets is any(r in SECRET_ARNS for r in spec.uses)
    # And only functions that post to connections may manage connections
    manages = any("execute-api:ManageConnections" in as_list(s["Action"]) for s in statements)
    assert manages is spec.posts_to_connections


def test_layer_ships_the_pinned_runtime_dependencies_without_boto3(resources):
    # Given pyproject's runtime dependencies and the lock file
    # When the layer's requirements are derived
    requirements = layer_requirements()
    # Then each is pinned, boto3 (provided by Lambda) is not among them
    assert requirements and all("==" in r for r in requirements)
    assert not any(r.lower().startswith(("boto3", "botocore")) for r in requirements)
    # And the layer is built for the functions' runtime and architecture
    (layer,) = of_type(resources, "AWS::Lambda::LayerVersion").values()
    assert layer["CompatibleRuntimes"] == ["python3.13"]
    assert layer["CompatibleArchitectures"] == ["arm64"]


# --- The app itself -----------------------------------------------------------------------------


def test_app_synthesizes_the_default_stage_into_cdk_out(app_run):
    # Given the app run from cdk/ with bundling skipped and no stage context (see `app_run`)
    process, started = app_run
    template_file = REPO_ROOT / "cdk.out" / "chat-dev.template.json"
    # When it finishes
    _, stderr = process.communicate(timeout=120)
    # Then it succeeded and wrote the dev stack's template, with every wiring route, to cdk.out
    assert process.returncode == 0, stderr
    assert template_file.stat().st_mtime >= started - 1
    template = json.loads(template_file.read_text())
    route_keys = {r["Properties"]["RouteKey"] for r in template["Resources"].values() if r["Type"] == ROUTE}
    assert route_keys == set(wiring.routes()) | {f"POST /v1/{action}" for action in wiring.http_routes()}
