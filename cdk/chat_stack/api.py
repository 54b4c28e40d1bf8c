"""The WebSocket API: one route per wiring route key, the `$connect` authorizer, one stage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from aws_cdk import CfnElement, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw_v1
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from chat_backend import wiring
from chat_stack.api_stages import stage_options
from chat_stack.nag import acknowledge

TOKEN_SOURCE = "route.request.querystring.token"  # PROTOCOL.md: wss://...?token=<JWT>
# Per-stage default for every route, well under the 10,000 RPS the account shares with @connections.
THROTTLE = apigw.ThrottleSettings(rate_limit=2000, burst_limit=1000)
# An access log line per connect, message and disconnect: after api_stages.REQUEST_FIELDS, these
# ($context variables of WebSocket APIs).
LOG_FIELDS = {
    "connectionId": "$context.connectionId",
    "eventType": "$context.eventType",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "error": "$context.error.message",
    "authorizerError": "$context.authorizer.error",
    "integrationStatus": "$context.integration.status",
    "integrationError": "$context.integration.error",
    "integrationLatencyMs": "$context.integration.latency",
}
EXECUTION_LOGGING_LEVEL = "ERROR"  # execution logs for failed requests only: no payloads logged


class ChatApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Mapping[str, lambda_.Function],
        stage_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        authorizer = authorizers.WebSocketLambdaAuthorizer(
            "TokenAuthorizer", functions[wiring.authorizer_function().name], identity_source=[TOKEN_SOURCE]
        )
        targets = {
            spec.name: integrations.WebSocketLambdaIntegration(
                f"{spec.name}Integration", functions[spec.name]
            )
            for spec in wiring.FUNCTIONS
            if spec.routes
        }
        options = {
            route: apigw.WebSocketRouteOptions(
                integration=targets[spec.name],
                authorizer=authorizer if route == "$connect" else None,
                return_response=spec.two_way,
            )
            for route, spec in wiring.routes().items()
        }
        # The routes API Gateway predefines take their options in the constructor; the others are added.
        self.api = apigw.WebSocketApi(
            self,
            "Api",
            route_selection_expression="$request.body.action",
            connect_route_options=options.pop("$connect", None),
            disconnect_route_options=options.pop("$disconnect", None),
            default_route_options=options.pop("$default", None),
        )
        for route, o in options.items():
            self.api.add_route(route, integration=o.integration, return_response=o.return_response)
        acknowledge(
            self.api,
            "AwsSolutions-APIG4",
            "WebSocket APIs authorize once per connection: the REQUEST authorizer guards $connect, "
            "and API Gateway accepts no authorizer on any other route of a WebSocket API.",
        )
        cloudwatch_role = self._cloudwatch_logging_role()
        self.stage = apigw.WebSocketStage(
            self,
            "Stage",
            web_socket_api=self.api,
            stage_name=stage_name,
            **stage_options(self, THROTTLE, LOG_FIELDS),
        )
        stage_resource = self.stage.node.default_child
        assert isinstance(stage_resource, apigw.CfnStage)
        stage_resource.add_property_override("DefaultRouteSettings.LoggingLevel", EXECUTION_LOGGING_LEVEL)
        stage_resource.add_property_override("DefaultRouteSettings.DataTraceEnabled", False)
        stage_resource.node.add_dependency(cloudwatch_role)  # logging needs the account's role first
        api_id = Stack.of(self).get_logical_id(cast(CfnElement, self.api.node.default_child))
        for spec in wiring.FUNCTIONS:
            if spec.posts_to_connections:
                fn = functions[spec.name]
                fn.add_environment(wiring.CALLBACK_URL_ENV, self.stage.callback_url)
                self.stage.grant_management_api_access(fn)
                assert fn.role is not None
                acknowledge(
                    fn.role,
                    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:"
                    f"<AWS::AccountId>:<{api_id}>/{stage_name}/*/@connections/*]",
                    "execute-api:ManageConnections on this API's own stage: connection ids exist only at "
                    "run time, so the @connections/<id> part cannot be named ahead.",
                )

    def _cloudwatch_logging_role(self) -> apigw_v1.CfnAccount:
        """The account-wide role API Gateway writes WebSocket access and execution logs with.
        Both are retained: another stage of this app in the same account relies on the setting too."""
        role = iam.Role(
            self,
            "CloudWatchLogsRole",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                )
            ],
        )
        role.apply_removal_policy(RemovalPolicy.RETAIN)
        acknowledge(
            role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "AWS's own policy for API Gateway's account-level logging role, the documented setup; "
            "API Gateway names the log groups it creates, so a narrower policy cannot be written ahead.",
        )
        account = apigw_v1.CfnAccount(self, "Account", cloud_watch_role_arn=role.role_arn)
        account.apply_removal_policy(RemovalPolicy.RETAIN)
        return account
