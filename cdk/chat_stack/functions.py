"""Lambda functions, one per `wiring.FUNCTIONS` entry, with their permissions and triggers.

A function's environment names exactly the resources it `uses`, under `wiring.resource_env_var`,
which is what `chat_backend.config` reads back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from aws_cdk import CfnElement, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from chat_backend import wiring
from chat_stack.nag import acknowledge
from chat_stack.queues import dead_end_queue
from chat_stack.runtime import ARCHITECTURE, FUNCTIONS_DIR, RUNTIME

LOG_RETENTION = logs.RetentionDays.ONE_MONTH
FAILED_RECORD_RETENTION = Duration.days(14)

_TABLE_GRANTS: dict[str, Callable[[dynamodb.Table, iam.IGrantable], iam.Grant]] = {
    "read": lambda table, fn: table.grant_read_data(fn),
    "write": lambda table, fn: table.grant_write_data(fn),
    "read_write": lambda table, fn: table.grant_read_write_data(fn),
}
_QUEUE_GRANTS: dict[str, Callable[[sqs.Queue, iam.IGrantable], iam.Grant]] = {
    "send": lambda queue, fn: queue.grant_send_messages(fn),
    "consume": lambda queue, fn: queue.grant_consume_messages(fn),
}
# Wiring secrets the deployer may leave out (the media CDN's key): a function that uses one the
# stack was not given gets neither its ARN nor a grant.
_OPTIONAL_SECRETS = frozenset(s.name for s in wiring.SECRETS)
_QUEUE_ACCESS: dict[str, tuple[str, ...]] = {
    "send": ("send",),
    "consume": ("consume",),
    "send_consume": ("send", "consume"),
}


@dataclass(frozen=True)
class FunctionResources:
    """The stack's resources a function may `use`, by wiring name: tables, queues, buckets, and the
    secrets the deployer gave (`_OPTIONAL_SECRETS` may be missing)."""

    tables: Mapping[str, dynamodb.Table]
    queues: Mapping[str, sqs.Queue]
    buckets: Mapping[str, s3.Bucket]
    secrets: Mapping[str, secretsmanager.ISecret] = field(default_factory=dict)

    def physical_name(self, resource: str) -> str:
        """What a function's environment gives for `resource`: a table's or bucket's name, a
        secret's ARN, a queue's URL."""
        if resource in self.tables:
            return self.tables[resource].table_name
        if resource in self.buckets:
            return self.buckets[resource].bucket_name
        if resource in self.secrets:
            return self.secrets[resource].secret_arn
        return self.queues[resource].queue_url


class Functions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        resources: FunctionResources,
        layer: lambda_.ILayerVersion,
        authorizer_env: Mapping[str, str],
        push_platforms: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._push_platforms: dict[str, str] = dict(push_platforms or {})  # platform -> application ARN
        self._resources, self._layer, self._authorizer_env = resources, layer, authorizer_env
        self.by_name: dict[str, lambda_.Function] = {}
        # Stream trigger -> the queue its records go to once retries are exhausted.
        self.failed_records: dict[str, sqs.Queue] = {}
        for spec in wiring.FUNCTIONS:
            fn = self._function(spec)
            self._grant(spec, fn)
            if isinstance(spec.trigger, wiring.ScheduleTrigger):
                self._schedule(spec, spec.trigger, fn)
            elif spec.trigger is not None:
                fn.add_event_source(self._event_source(spec, spec.trigger))
            self._acknowledge_wildcards(spec, fn)
            self.by_name[spec.name] = fn

    def _function(self, spec: wiring.Function) -> lambda_.Function:
        """The one place a Lambda is built: everything that differs comes from `spec`."""
        log_group = logs.LogGroup(
            self, f"{spec.name}Logs", retention=LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
        )
        # Its own role, without the AWS-managed basic execution policy: logs go to its own group only.
        role = iam.Role(
            self,
            f"{spec.name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"The {spec.name} function of the chat backend",
        )
        log_group.grant(role, "logs:CreateLogStream", "logs:PutLogEvents")
        fn = lambda_.Function(
            self,
            spec.name,
            role=role,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(FUNCTIONS_DIR / spec.name), exclude=["__pycache__", "*.pyc"]),
            layers=[self._layer],
            timeout=Duration.seconds(spec.timeout_s),
            memory_size=spec.memory_mb,
            environment=self._environment(spec),
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
        )
        acknowledge(
            fn,
            "AwsSolutions-L1",
            f"The backend targets {RUNTIME.name} (the layer is built for it); "
            "moving to a newer runtime is a deliberate upgrade, not a synth-time default.",
        )
        return fn

    def _environment(self, spec: wiring.Function) -> dict[str, str]:
        env = dict(wiring.FUNCTION_ENV)
        for resource in spec.uses:
            if resource in _OPTIONAL_SECRETS and resource not in self._resources.secrets:
                continue
            env[wiring.resource_env_var(resource)] = self._resources.physical_name(resource)
        if spec.authorizer:
            env.update(self._authorizer_env)
        if spec.sends_push:
            env[wiring.PUSH_PLATFORMS_ENV] = json.dumps(self._push_platforms, sort_keys=True)
        # CALLBACK_URL_ENV is added by the API construct: it needs the stage.
        return env

    def _grant(self, spec: wiring.Function, fn: lambda_.Function) -> None:
        for resource, access in spec.uses.items():
            if resource in self._resources.tables and access in _TABLE_GRANTS:
                _TABLE_GRANTS[access](self._resources.tables[resource], fn)
            elif resource in self._resources.queues and access in _QUEUE_ACCESS:
                for grant in _QUEUE_ACCESS[access]:
                    if grant == "consume" and _consumes_by_trigger(spec, resource):
                        continue  # the SQS event source grants exactly what its poller needs
                    _QUEUE_GRANTS[grant](self._resources.queues[resource], fn)
            elif resource in self._resources.buckets and access in wiring.BUCKET_ACTIONS:
                bucket = self._resources.buckets[resource]
                fn.add_to_role_policy(
                    iam.PolicyStatement(
                        actions=list(wiring.BUCKET_ACTIONS[access]), resources=[bucket.arn_for_objects("*")]
                    )
                )
            elif resource in self._resources.secrets and access in wiring.SECRET_ACTIONS:
                fn.add_to_role_policy(
                    iam.PolicyStatement(
                        actions=list(wiring.SECRET_ACTIONS[access]),
                        resources=[self._resources.secrets[resource].secret_arn],
                    )
                )
            elif resource in _OPTIONAL_SECRETS and resource not in self._resources.secrets:
                continue  # not given to this stack: nothing to grant
            else:
                raise ValueError(f"wiring: function {spec.name!r} cannot {access!r} {resource!r}")
        if spec.sends_push and self._push_platforms:
            applications = sorted(self._push_platforms.values())
            fn.add_to_role_policy(
                iam.PolicyStatement(actions=["sns:CreatePlatformEndpoint"], resources=applications)
            )
            fn.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["sns:Publish", "sns:DeleteEndpoint", "sns:SetEndpointAttributes"],
                    resources=[endpoints_of(arn) for arn in applications],
                )
            )

    def _acknowledge_wildcards(self, spec: wiring.Function, fn: lambda_.Function) -> None:
        """The IAM5 findings of this function's role, each with why the wildcard is the narrowest grant."""
        assert fn.role is not None
        if spec.sends_push:
            for arn in sorted(self._push_platforms.values()):
                acknowledge(
                    fn.role,
                    f"AwsSolutions-IAM5[Resource::{endpoints_of(arn)}]",
                    "The device endpoints of one push platform application: SNS names each endpoint "
                    "after a random id, made when a device registers (publish and delete only).",
                )
        needs_any = ["xray:PutTraceSegments / PutTelemetryRecords (X-Ray has no resource-level permissions)"]
        if isinstance(spec.trigger, wiring.StreamTrigger):
            needs_any.append("dynamodb:ListStreams (a list action, it takes no resource)")
        acknowledge(fn.role, "AwsSolutions-IAM5[Resource::*]", "Only " + " and ".join(needs_any) + ".")
        tables, buckets = self._resources.tables, self._resources.buckets
        for resource in spec.uses:
            if resource in tables and wiring.table(resource).indexes:
                table_id = _logical_id(tables[resource])
                acknowledge(
                    fn.role,
                    f"AwsSolutions-IAM5[Resource::<{table_id}.Arn>/index/*]",
                    f"The global secondary indexes of the {resource} table only, which the function queries "
                    "with the table's own access (the wiring's `uses`).",
                )
            if resource in buckets:
                bucket_id = _logical_id(buckets[resource])
                acknowledge(
                    fn.role,
                    f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/*]",
                    f"The objects of the {resource} bucket, which the function presigns uploads / downloads "
                    "of by key; object-level actions only (the wiring's `uses`).",
                )

    def _schedule(self, spec: wiring.Function, trigger: wiring.ScheduleTrigger, fn: lambda_.Function) -> None:
        """An EventBridge rule invoking the function every `rate_minutes` (the event's `time` is
        its "now"); a failed run is retried twice, then the next tick tries again."""
        events.Rule(
            self,
            f"{spec.name}-schedule",
            schedule=events.Schedule.rate(Duration.minutes(trigger.rate_minutes)),
            targets=[events_targets.LambdaFunction(fn, retry_attempts=2)],
        )

    def _event_source(
        self, spec: wiring.Function, trigger: wiring.StreamTrigger | wiring.QueueTrigger
    ) -> lambda_.IEventSource:
        if isinstance(trigger, wiring.QueueTrigger):
            return event_sources.SqsEventSource(
                self._resources.queues[trigger.queue],
                batch_size=trigger.batch_size,
                report_batch_item_failures=True,
                max_concurrency=trigger.max_concurrency,
            )
        if wiring.table(trigger.table).stream is None:
            raise ValueError(
                f"wiring: {spec.name!r} is triggered by table {trigger.table!r}, which has no stream"
            )
        return event_sources.DynamoEventSource(
            self._resources.tables[trigger.table],
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=trigger.batch_size,
            bisect_batch_on_error=trigger.bisect_on_error,
            retry_attempts=trigger.max_retries,
            report_batch_item_failures=True,
            on_failure=event_sources.SqsDlq(self._failed_records_queue(spec)),
            # The wiring's pattern is already Lambda's JSON (lists of allowed values at the leaves).
            filters=[lambda_.FilterCriteria.filter(trigger.filter_pattern)]
            if trigger.filter_pattern
            else None,
        )

    def _failed_records_queue(self, spec: wiring.Function) -> sqs.Queue:
        """Where a stream record goes after its last retry, so it is kept instead of skipped.
        A standard queue: stream on-failure destinations do not accept FIFO queues."""
        queue = dead_end_queue(
            self,
            f"{spec.name}FailedRecords",
            retention=FAILED_RECORD_RETENTION,
            why="This queue is itself the dead end of the stream trigger (its on-failure destination): "
            "nothing consumes it, so it needs no DLQ; an alarm fires on its depth.",
        )
        self.failed_records[spec.name] = queue
        return queue


def _logical_id(resource: Construct) -> str:
    return Stack.of(resource).get_logical_id(cast(CfnElement, resource.node.default_child))


def _consumes_by_trigger(spec: wiring.Function, queue: str) -> bool:
    return isinstance(spec.trigger, wiring.QueueTrigger) and spec.trigger.queue == queue


def endpoints_of(application_arn: str) -> str:
    """The ARN pattern of a platform application's endpoints (`...:app/GCM/name` ->
    `...:endpoint/GCM/name/*`)."""
    return application_arn.replace(":app/", ":endpoint/", 1) + "/*"
