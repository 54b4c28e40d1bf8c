"""What the stages of both APIs (WebSocket and HTTP) share: deployed on every change, throttled, and
JSON access logs, one line per request of `$context` variables into a log group of the API's own."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsii
from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw_v1
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_logs as logs
from constructs import Construct

ACCESS_LOG_RETENTION = logs.RetentionDays.THREE_MONTHS
# What every API's line starts with: which request, when, and from where.
REQUEST_FIELDS = {
    "requestId": "$context.requestId",
    "time": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
}


@jsii.implements(apigw.IAccessLogSettings)
class JsonAccessLogs:
    """JSON access logs into a CloudWatch log group: one line of `fields` ($context variables)."""

    def __init__(self, log_group: logs.ILogGroup, fields: Mapping[str, str]) -> None:
        self._destination = apigw.LogGroupLogDestination(log_group)
        self._fields = dict(fields)

    @property
    def destination(self) -> apigw.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw_v1.AccessLogFormat:
        return apigw_v1.AccessLogFormat.custom(json.dumps(self._fields, separators=(",", ":")))


def stage_options(
    api: Construct, throttle: apigw.ThrottleSettings, log_fields: Mapping[str, str]
) -> dict[str, Any]:
    """The options of `api`'s stage: auto-deployed, `throttle` for every route by default, and access
    logs into its own log group ("AccessLogs", kept ACCESS_LOG_RETENTION), one line of
    REQUEST_FIELDS and then `log_fields` per request."""
    log_group = logs.LogGroup(
        api, "AccessLogs", retention=ACCESS_LOG_RETENTION, removal_policy=RemovalPolicy.DESTROY
    )
    access_logs = JsonAccessLogs(log_group, {**REQUEST_FIELDS, **log_fields})
    return {"auto_deploy": True, "throttle": throttle, "access_log_settings": access_logs}
