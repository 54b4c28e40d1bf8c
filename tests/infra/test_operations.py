"""Production hardening of the synthesized stack: checks (cdk-nag, cfn-lint), the media bucket,
tracing and logging, identity, alarms, outputs and the context parameters.

Expectations come from `chat_backend.wiring` where it declares them (functions, queues, buckets)."""

from __future__ import annotations

import subprocess
from typing import Any

import boto3
import pytest
from app import context_arguments
from aws_cdk import App
from aws_cdk.assertions import Match, Template
from chat_stack import build
from chat_stack.settings import DEFAULT_STAGE, DeploySettings
from moto import mock_aws

from chat_backend import wiring
from local_stack.bootstrap import create_bucket, lifecycle_transitions
from tests.infra.conftest import SKIP_BUNDLING, STAGE
from tests.infra.helpers import function_props, logical_id, of_type, references, stage_of

ALARM = "AWS::CloudWatch::Alarm"
TRIGGERED_BY_STREAM = [fn for fn in wiring.FUNCTIONS if isinstance(fn.trigger, wiring.StreamTrigger)]
ALARM_EMAIL = "ops@example.com"
EXISTING_POOL = {"userPoolId": "eu-west-1_Existing1", "userPoolClientId": "existingclientid123"}


@pytest.fixture(scope="module")
def production_template() -> Template:
    """The stack as an operator deploys it: alarm email and an existing user pool given as context."""
    context = {**SKIP_BUNDLING, "stage": "prod", "alarmEmail": ALARM_EMAIL, **EXISTING_POOL}
    return Template.from_stack(build(App(context=context)))  # synth runs the AwsSolutions checks too


def alarms_on(resources: dict[str, Any], metric_name: str) -> list[dict[str, Any]]:
    return [a for a in of_type(resources, ALARM).values() if a.get("MetricName") == metric_name]


def alarmed_ids(alarms: list[dict[str, Any]], dimension: str) -> set[str]:
    return {
        ref
        for a in alarms
        for d in a["Dimensions"]
        if d["Name"] == dimension
        for ref in references(d["Value"])
    }


# --- Checks -------------------------------------------------------------------------------------


def test_cdk_nag_aws_solutions_reports_nothing_unacknowledged(synthesis):
    # Given the app with cdk-nag's AwsSolutions pack (added by `build`, as `make synth` runs it)
    # When it is synthesized
    assembly, violations = synthesis
    # Then no finding is left: every remaining one is acknowledged with a reason in the stack code
    assert [(v["ruleName"], [c["constructPath"] for c in v["violatingConstructs"]]) for v in violations] == []
    assert assembly is not None


def test_cfn_lint_finds_no_errors_in_the_template(cfn_lint_run: subprocess.Popen[str]):
    # Given the synthesized template (see `cfn_lint_run`)
    # When cfn-lint checks it, failing on errors only
    output, _ = cfn_lint_run.communicate(timeout=120)
    # Then it reports no error
    assert cfn_lint_run.returncode == 0, output


# --- Media bucket -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", wiring.BUCKETS, ids=lambda b: b.name)
def test_bucket_is_private_encrypted_tls_only_and_follows_its_wiring_lifecycle(stack, resources, spec):
    # Given a bucket of the wiring table
    bucket_id = logical_id(stack, stack.buckets.by_name[spec.name])
    # When the stack is synthesized
    resource = resources[bucket_id]
    props = resource["Properties"]
    # Then it blocks public access, is encrypted, versioned, logged and kept when the stack goes
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["LoggingConfiguration"]["DestinationBucketName"]
    assert resource["DeletionPolicy"] == "Retain"
    # And its policy refuses requests without TLS
    assert any(
        props_["Bucket"] == {"Ref": bucket_id}
        and s["Effect"] == "Deny"
        and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for props_ in of_type(resources, "AWS::S3::BucketPolicy").values()
        for s in props_["PolicyDocument"]["Statement"]
    )
    # And its lifecycle is the wiring's
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    rule = rules["lifecycle"]
    assert rule["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": spec.abort_incomplete_upload_days
    }
    transitions = [
        {"StorageClass": cls, "TransitionInDays": days} for cls, days in lifecycle_transitions(spec)
    ]
    assert rule["Transitions"] == transitions
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": spec.expire_noncurrent_after_days}
    # And uploads no message attached (still tagged pending) expire, where the wiring says so
    if spec.expire_pending_after_days is None:
        assert "expire-unattached" not in rules
        return
    pending = rules["expire-unattached"]
    assert pending["TagFilters"] == [{"Key": "state", "Value": "pending"}]
    assert pending["ExpirationInDays"] == spec.expire_pending_after_days


@pytest.mark.parametrize("spec", wiring.BUCKETS, ids=lambda b: b.name)
def test_local_stack_creates_the_bucket_with_the_same_lifecycle(stack, resources, spec, monkeypatch):
    # Given a bucket of the wiring table, and the template's lifecycle rule for it
    cdk_rules = resources[logical_id(stack, stack.buckets.by_name[spec.name])]["Properties"][
        "LifecycleConfiguration"
    ]["Rules"]
    cdk_rule = next(r for r in cdk_rules if r["Id"] == "lifecycle")
    cdk_pending = next((r for r in cdk_rules if r["Id"] == "expire-unattached"), None)
    for var, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(var, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        # When the local stack's bootstrap creates it on (moto) S3
        create_bucket(s3, spec)
        local_rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=spec.name)["Rules"]}
        local_rule, local_pending = local_rules["lifecycle"], local_rules.get("expire-unattached")
        versioning = s3.get_bucket_versioning(Bucket=spec.name)["Status"]
    # Then both stacks abort uploads, move to cheaper storage classes and expire old versions alike
    assert local_rule["AbortIncompleteMultipartUpload"] == cdk_rule["AbortIncompleteMultipartUpload"]
    assert [(t["Days"], t["StorageClass"]) for t in local_rule["Transitions"]] == [
        (t["TransitionInDays"], t["StorageClass"]) for t in cdk_rule["Transitions"]
    ]
    assert local_rule["NoncurrentVersionExpiration"] == cdk_rule["NoncurrentVersionExpiration"]
    assert versioning == "Enabled"
    assert (local_pending is None) is (cdk_pending is None)
    if local_pending is not None and cdk_pending is not None:
        assert local_pending["Filter"]["Tag"] == cdk_pending["TagFilters"][0]
        assert local_pending["Expiration"]["Days"] == cdk_pending["ExpirationInDays"]


def test_the_template_has_the_wiring_buckets_and_their_access_log_bucket(resources):
    # Given the wiring's buckets / When synthesized (with the media CDN) / Then each, plus one bucket
    # for S3 access logs and one for the CDN's standard logs
    assert len(of_type(resources, "AWS::S3::Bucket")) == len(wiring.BUCKETS) + 2


# --- Functions, queues and the API: operations --------------------------------------------------


@pytest.mark.parametrize("spec", wiring.FUNCTIONS, ids=lambda f: f.name)
def test_function_is_traced_and_named_for_powertools_with_its_own_role(stack, resources, spec):
    # Given a function of the wiring table
    # When the stack is synthesized
    props = function_props(stack, resources, spec.name)
    # Then X-Ray tracing is active and powertools' service and metrics namespace are set
    assert props["TracingConfig"] == {"Mode": "Active"}
    env = props["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "chat"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Chat"
    # And traces never hold a handler's answer (presigned URLs, member lists, heads)
    assert env["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
    # And its role is its own, assumable by Lambda only, without AWS-managed policies
    role_id = props["Role"]["Fn::GetAtt"][0]
    other_roles = {
        function_props(stack, resources, f.name)["Role"]["Fn::GetAtt"][0]
        for f in wiring.FUNCTIONS
        if f != spec
    }
    assert role_id not in other_roles
    role = resources[role_id]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert "ManagedPolicyArns" not in role


def test_every_queue_is_encrypted_at_rest(template):
    # Given every queue of the stack (wiring queues, their DLQs, the stream's failed-record queue)
    # When synthesized / Then each uses SQS-managed server-side encryption
    template.all_resources_properties("AWS::SQS::Queue", {"SqsManagedSseEnabled": True})


def test_stage_writes_json_access_logs_and_error_execution_logs(stack, resources):
    # Given the WebSocket stage
    # When the stack is synthesized
    stage = stage_of(resources)
    # Then access logs go to a CloudWatch log group of the stack, one JSON line with the request id
    (log_group_id,) = references(stage["AccessLogSettings"]["DestinationArn"])
    assert resources[log_group_id]["Type"] == "AWS::Logs::LogGroup"
    assert resources[log_group_id]["Properties"]["RetentionInDays"]
    assert '"requestId":"$context.requestId"' in stage["AccessLogSettings"]["Format"]
    # And failed requests get execution logs, never payloads; the account's logging role is set
    assert stage["DefaultRouteSettings"]["LoggingLevel"] == "ERROR"
    assert stage["DefaultRouteSettings"]["DataTraceEnabled"] is False
    (account,) = of_type(resources, "AWS::ApiGateway::Account").values()
    assert resources[account["CloudWatchRoleArn"]["Fn::GetAtt"][0]]["Type"] == "AWS::IAM::Role"


# --- Identity -----------------------------------------------------------------------------------


def test_app_client_allows_the_password_and_srp_flows_without_a_secret(template):
    # Given the stack's own user pool (no userPoolId context)
    # When synthesized
    (client,) = template.find_resources("AWS::Cognito::UserPoolClient").values()
    # Then its app client allows the flows the SDK, the CLI and the e2e suite use, as a public client
    flows = set(client["Properties"]["ExplicitAuthFlows"])
    assert {"ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH"} <= flows
    assert client["Properties"].get("GenerateSecret", False) is False
    # And the pool keeps its users when the stack goes, and requires strong passwords
    (pool,) = template.find_resources("AWS::Cognito::UserPool").values()
    assert pool["DeletionPolicy"] == "Retain"
    policy = pool["Properties"]["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 12
    assert all(
        policy[k] for k in ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols")
    )


def test_an_existing_user_pool_given_as_context_is_used_instead_of_a_new_one(production_template):
    # Given context userPoolId / userPoolClientId (see `production_template`)
    # When synthesized
    resources = production_template.to_json()["Resources"]
    # Then the stack creates no pool and no client
    assert not of_type(resources, "AWS::Cognito::UserPool")
    assert not of_type(resources, "AWS::Cognito::UserPoolClient")
    # And the authorizer verifies tokens of the given pool, for the given client
    (authorizer,) = [
        props
        for props in of_type(resources, "AWS::Lambda::Function").values()
        if wiring.JWKS_URL_ENV in props["Environment"]["Variables"]
    ]
    env = authorizer["Environment"]["Variables"]
    assert EXISTING_POOL["userPoolId"] in str(env[wiring.JWKS_URL_ENV])
    assert env[wiring.JWT_AUDIENCE_ENV] == EXISTING_POOL["userPoolClientId"]
    outputs = production_template.to_json()["Outputs"]
    assert outputs["UserPoolId"]["Value"] == EXISTING_POOL["userPoolId"]


# --- Alarms -------------------------------------------------------------------------------------


def test_every_dead_letter_queue_has_a_depth_alarm(stack, resources):
    # Given every DLQ: one per wiring queue, and the stream trigger's failed-record queue
    dlqs = {
        logical_id(stack, q) for q in (*stack.queues.dlqs.values(), *stack.functions.failed_records.values())
    }
    assert len(dlqs) == len(wiring.QUEUES) + len(TRIGGERED_BY_STREAM)
    # When synthesized
    alarms = alarms_on(resources, "ApproximateNumberOfMessagesVisible")
    # Then each has an alarm firing on one visible message
    assert alarmed_ids(alarms, "QueueName") == dlqs
    assert all(a["Threshold"] == 0 and a["ComparisonOperator"] == "GreaterThanThreshold" for a in alarms)


@pytest.mark.parametrize("metric_name", ["Errors", "Throttles"])
def test_every_function_has_an_errors_and_a_throttles_alarm(stack, resources, metric_name):
    # Given every function of the wiring / When synthesized
    alarms = alarms_on(resources, metric_name)
    # Then each has an alarm on the metric
    expected = {logical_id(stack, stack.functions.by_name[f.name]) for f in wiring.FUNCTIONS}
    assert alarmed_ids(alarms, "FunctionName") == expected
    assert len(alarms) == len(wiring.FUNCTIONS)


def test_stream_triggers_have_an_iterator_age_alarm(stack, resources):
    # Given the functions the wiring triggers from a table stream / When synthesized
    alarms = alarms_on(resources, "IteratorAge")
    # Then each has an alarm on its iterator age
    expected = {logical_id(stack, stack.functions.by_name[f.name]) for f in TRIGGERED_BY_STREAM}
    assert expected and alarmed_ids(alarms, "FunctionName") == expected


@pytest.mark.parametrize("metric_name", ["ExecutionError", "IntegrationError"])
def test_websocket_stage_has_a_server_error_alarm(stack, resources, metric_name):
    # Given the WebSocket API's stage / When synthesized
    (alarm,) = alarms_on(resources, metric_name)
    # Then the API Gateway metric of this API and stage is alarmed
    assert alarm["Namespace"] == "AWS/ApiGateway"
    dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert dims["ApiId"] == {"Ref": logical_id(stack, stack.api.api)}
    assert dims["Stage"] == STAGE


def test_without_alarm_email_alarms_have_no_topic(resources):
    # Given no alarmEmail context / When synthesized / Then no SNS topic and no alarm actions
    assert not of_type(resources, "AWS::SNS::Topic")
    assert all("AlarmActions" not in a for a in of_type(resources, ALARM).values())


def test_with_alarm_email_every_alarm_notifies_a_topic_emailing_it(production_template):
    # Given context alarmEmail (see `production_template`)
    # When synthesized
    resources = production_template.to_json()["Resources"]
    # Then one topic exists, with an email subscription to that address
    ((topic_id, _),) = [(k, r) for k, r in resources.items() if r["Type"] == "AWS::SNS::Topic"]
    production_template.has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "email", "Endpoint": ALARM_EMAIL, "TopicArn": {"Ref": topic_id}},
    )
    # And every alarm notifies it
    alarms = of_type(resources, ALARM).values()
    assert alarms and all(a["AlarmActions"] == [{"Ref": topic_id}] for a in alarms)


# --- Outputs and context ------------------------------------------------------------------------


def test_outputs_give_the_urls_the_user_pool_and_the_media_bucket(stack, template):
    # Given the stack / When synthesized
    outputs = template.to_json()["Outputs"]
    # Then the WebSocket URL is wss://, the @connections callback URL is https://, ending in the stage
    assert outputs["WebSocketUrl"]["Value"]["Fn::Join"][1][0] == "wss://"
    callback = outputs["CallbackUrl"]["Value"]["Fn::Join"][1]
    assert callback[0] == "https://" and callback[-1] == f"/{STAGE}"
    # And the user pool, its app client and the media bucket are named
    assert outputs["UserPoolId"]["Value"] == {"Ref": logical_id(stack, stack.users.pool)}
    assert outputs["UserPoolClientId"]["Value"] == {"Ref": logical_id(stack, stack.users.client)}
    assert outputs["MediaBucketName"]["Value"] == {"Ref": logical_id(stack, stack.buckets.by_name["media"])}
    template.has_output("WebSocketUrl", {"Description": Match.any_value()})


def test_context_parameters_are_read_in_one_place_with_defaults():
    # Given an app without context, and one with every parameter
    # When the settings are read
    default = DeploySettings.from_context(App().node)
    given = DeploySettings.from_context(
        App(context={"stage": "prod", "alarmEmail": ALARM_EMAIL, **EXISTING_POOL}).node
    )
    # Then the defaults are the dev stage, no alarm email and a pool of the stack's own
    assert (default.stage, default.alarm_email, default.existing_user_pool) == (DEFAULT_STAGE, None, None)
    assert (given.stage, given.alarm_email) == ("prod", ALARM_EMAIL)
    assert given.existing_user_pool is not None
    assert given.existing_user_pool.user_pool_id == EXISTING_POOL["userPoolId"]
    # And half an existing pool is refused
    with pytest.raises(ValueError, match="userPoolClientId"):
        DeploySettings.from_context(App(context={"userPoolId": "eu-west-1_x"}).node)


def test_app_takes_context_flags_like_the_cdk_cli():
    # Given `python app.py -c stage=prod --context alarmEmail=a=b@example.com`
    # When its arguments are parsed / Then they become context (values may hold "=")
    assert context_arguments(["-c", "stage=prod", "--context", "alarmEmail=a=b@example.com"]) == {
        "stage": "prod",
        "alarmEmail": "a=b@example.com",
    }
