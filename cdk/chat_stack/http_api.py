"""The HTTP fallback's HTTP API (PROTOCOL.md v1.1 "HTTP fallback"): `POST /v1/<action>` for every
action `wiring.http_routes()` serves, each integrated (payload format 2.0) with the function the
wiring says serves it, behind a JWT authorizer on the Cognito user pool (the WebSocket's tokens);
one `$default` stage with throttling and JSON access logs. No CORS: the SDK is no browser page."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from chat_backend import wiring
from chat_stack.api_stages import stage_options

PATH_PREFIX = "/v1/"
TOKEN_SOURCE = "$request.header.Authorization"  # `Authorization: Bearer <JWT>`
# Per-stage default for every route (wiring.HTTP_STAGE_THROTTLE: the local gateway applies the same).
THROTTLE = apigw.ThrottleSettings(
    rate_limit=wiring.HTTP_STAGE_THROTTLE.per_s, burst_limit=wiring.HTTP_STAGE_THROTTLE.burst
)
# An access log line per request: after api_stages.REQUEST_FIELDS, these ($context variables of HTTP
# APIs); no bodies, no tokens.
LOG_FIELDS = {
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "error": "$context.error.message",
    "authorizerError": "$context.authorizer.error",
    "integrationStatus": "$context.integrationStatus",
    "integrationError": "$context.integrationErrorMessage",
    "integrationLatencyMs": "$context.integrationLatency",
}


class ChatHttpApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Mapping[str, lambda_.Function],
        issuer: str,
        audience: str,
    ) -> None:
        super().__init__(scope, construct_id)
        # API Gateway checks the signature (the issuer's JWKS), expiry, issuer and audience, and
        # passes the claims on; the function takes the caller from them (routes.py).
        authorizer = authorizers.HttpJwtAuthorizer(
            "CognitoJwt", issuer, jwt_audience=[audience], identity_source=[TOKEN_SOURCE]
        )
        self.api = apigw.HttpApi(
            self, "Api", create_default_stage=False, description="Chat HTTP fallback (POST /v1/<action>)"
        )
        served = wiring.http_routes()
        targets = {
            spec.name: integrations.HttpLambdaIntegration(
                f"{spec.name}HttpIntegration",
                functions[spec.name],
                payload_format_version=apigw.PayloadFormatVersion.VERSION_2_0,
            )
            for spec in served.values()
        }
        for action, spec in served.items():
            self.api.add_routes(
                path=f"{PATH_PREFIX}{action}",
                methods=[apigw.HttpMethod.POST],
                integration=targets[spec.name],
                authorizer=authorizer,
            )
        self.stage = apigw.HttpStage(
            self,
            "Stage",
            http_api=self.api,
            stage_name="$default",
            **stage_options(self, THROTTLE, LOG_FIELDS),
        )

    @property
    def url(self) -> str:
        """The base URL clients POST `v1/<action>` under (the SDK's `http_url`)."""
        return str(self.stage.url)
