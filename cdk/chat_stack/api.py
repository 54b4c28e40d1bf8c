"""The WebSocket API: one route per wiring route key, the `$connect` authorizer, one stage."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from chat_backend import wiring

TOKEN_SOURCE = "route.request.querystring.token"  # PROTOCOL.md: wss://...?token=<JWT>
# Per-stage default for every route, well under the 10,000 RPS the account shares with @connections.
THROTTLE = apigw.ThrottleSettings(rate_limit=2000, burst_limit=1000)


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
        self.stage = apigw.WebSocketStage(
            self, "Stage", web_socket_api=self.api, stage_name=stage_name, auto_deploy=True, throttle=THROTTLE
        )
        for spec in wiring.FUNCTIONS:
            if spec.posts_to_connections:
                functions[spec.name].add_environment(wiring.CALLBACK_URL_ENV, self.stage.callback_url)
                self.stage.grant_management_api_access(functions[spec.name])
